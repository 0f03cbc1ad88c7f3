package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sibylhq/sibyl/command"
)

// A node whose data directory was wiped adopts the higher incarnation the controller
// recorded for its instance, and persists it so its next start counts from there.
func TestAdoptIncarnation(t *testing.T) {
	dir := t.TempDir()
	inc, err := bumpIncarnation(filepath.Join(dir, "incarnation"))
	if err != nil || inc != 1 {
		t.Fatalf("first incarnation %d, %v", inc, err)
	}
	n := &Node{cfg: Config{ID: 3, DataDir: dir}, instance: "me", log: zerolog.Nop()}
	n.incarnation.Store(inc)
	dirWith := func(instance string, inc uint64) *command.Directory {
		return &command.Directory{Nodes: []command.NodeInfo{{ID: 3, Instance: instance, Incarnation: inc}}}
	}
	n.adoptIncarnation(dirWith("someone-else", 9))
	n.adoptIncarnation(dirWith("me", 1))
	if n.incarnation.Load() != 1 {
		t.Fatalf("adopted %d from another instance or an equal incarnation", n.incarnation.Load())
	}
	if _, _, wiped := n.joinIdentity(); wiped {
		t.Fatal("a join says wiped before any incarnation was adopted")
	}
	n.adoptIncarnation(dirWith("me", 7))
	if n.incarnation.Load() != 7 {
		t.Fatalf("incarnation %d, want the recorded 7", n.incarnation.Load())
	}
	// Its joins at the other locations (as a guest) say that its data directory was wiped:
	// they carry the adopted 7, which those locations cannot tell from a restart's.
	if instance, inc, wiped := n.joinIdentity(); instance != "me" || inc != 7 || !wiped {
		t.Fatalf("join identity after adopting: %q %d wiped=%v; want me 7 wiped", instance, inc, wiped)
	}
	b, err := os.ReadFile(filepath.Join(dir, "incarnation"))
	if err != nil || strings.TrimSpace(string(b)) != "7" {
		t.Fatalf("persisted incarnation %q, %v; want 7", b, err)
	}
	if inc, err := bumpIncarnation(filepath.Join(dir, "incarnation")); err != nil || inc != 8 {
		t.Fatalf("next start's incarnation %d, %v; want 8", inc, err)
	}
}
