package command

import (
	"strings"
	"testing"
)

func TestParseRID(t *testing.T) {
	const u = "01JDQ8T5Z8K3N2M4P6R8S0V2X4"
	tests := []struct {
		in     string
		server ServerID // 0 when the rid must be refused
	}{
		{"3-" + u, 3},
		{"1-" + u, 1},
		{"65535-" + u, 65535},
		{"0-" + u, 0},
		{"65536-" + u, 0},
		{"03-" + u, 0},
		{"00003-" + u, 0},
		{"3-" + strings.ToLower(u), 0},
		{"3-" + u[:10] + "j" + u[11:], 0}, // one lower-case letter
		{"3" + u, 0},                      // missing dash
		{"3-" + u + "Z", 0},               // extra character
		{"3-" + u[1:], 0},                 // short ULID
		{"3-" + u + "\n", 0},
		{" 3-" + u, 0},
		{"+3-" + u, 0},
		{"-3-" + u, 0},
		{"3--" + u[1:], 0},
		{"-" + u, 0},
		{"3-8" + u[1:], 0},                // over 128 bits
		{"3-" + u[:25] + "I", 0},          // not Crockford base32
		{"3-" + u[:25] + "U", 0},          // not Crockford base32
		{"123456-" + u, 0},                // six digits
		{"3-" + u[:13] + "-" + u[14:], 0}, // dash inside
		{"", 0},
	}
	for _, tt := range tests {
		r, err := ParseRID(tt.in)
		if tt.server == 0 {
			if err == nil || CodeOf(err) != CodeBadRequest {
				t.Errorf("ParseRID(%q) = %v, %v; want bad_request", tt.in, r, err)
			}
			continue
		}
		if err != nil || r.Server != tt.server || r.String() != tt.in {
			t.Errorf("ParseRID(%q) = %v (%q), %v", tt.in, r, r.String(), err)
		}
		if g, err := GroupOf(tt.in); err != nil || g != tt.server {
			t.Errorf("GroupOf(%q) = %d, %v", tt.in, g, err)
		}
	}
}

func TestParseServerID(t *testing.T) {
	for in, want := range map[string]ServerID{"1": 1, "65535": 65535, "0": 0, "65536": 0, "01": 0, "": 0, "-1": 0, "1e3": 0} {
		got, err := ParseServerID(in)
		if (want == 0) != (err != nil) || got != want {
			t.Errorf("ParseServerID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// FuzzParseRID checks that ParseRID never panics and accepts only the canonical form: a rid
// it accepts prints back as exactly the input.
func FuzzParseRID(f *testing.F) {
	for _, s := range []string{"3-01JDQ8T5Z8K3N2M4P6R8S0V2X4", "65535-7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "0-01JDQ8T5Z8K3N2M4P6R8S0V2X4",
		"03-01JDQ8T5Z8K3N2M4P6R8S0V2X4", "3-01jdq8t5z8k3n2m4p6r8s0v2x4", "301JDQ8T5Z8K3N2M4P6R8S0V2X4", "", "-", "1-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRID(s)
		if err != nil {
			if CodeOf(err) != CodeBadRequest {
				t.Fatalf("ParseRID(%q): %v is not bad_request", s, err)
			}
			return
		}
		if r.String() != s || r.Server == 0 {
			t.Fatalf("ParseRID(%q) accepted a non-canonical rid: %q", s, r.String())
		}
	})
}
