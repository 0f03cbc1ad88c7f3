package command

import "testing"

func TestSecretOK(t *testing.T) {
	for _, tc := range []struct {
		got, want string
		ok        bool
	}{
		{"", "", true},
		{"anything", "", true},
		{"s3cret", "s3cret", true},
		{"", "s3cret", false},
		{"s3cre", "s3cret", false},
		{"s3cret2", "s3cret", false},
		{"S3CRET", "s3cret", false},
	} {
		if got := SecretOK(tc.got, tc.want); got != tc.ok {
			t.Errorf("SecretOK(%q, %q) = %v, want %v", tc.got, tc.want, got, tc.ok)
		}
	}
}

func TestTokenIn(t *testing.T) {
	tokens := []string{"a1", "b2"}
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"a1", true}, {"b2", true}, {"", false}, {"a", false}, {"a1 ", false}} {
		if got := TokenIn(tc.token, tokens); got != tc.ok {
			t.Errorf("TokenIn(%q) = %v, want %v", tc.token, got, tc.ok)
		}
	}
	if TokenIn("", nil) || TokenIn("x", nil) {
		t.Error("TokenIn with no tokens accepted something")
	}
}
