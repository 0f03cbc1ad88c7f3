package node

import (
	"errors"
	"sync"
	"testing"
)

// Two seals of one home generation from two locations (two rehomes at once) may both pass
// the seal's checks; the record is the last word: the copy promises the first home only
// and refuses the other, also after its node restarts, and a later generation replaces it.
func TestHomesPromiseOneHomePerGeneration(t *testing.T) {
	dir := t.TempDir()
	h, err := loadHomes(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, loc := range []string{"loc2", "loc3"} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = h.record(1, homeRecord{Home: loc, Gen: 1}) }()
	}
	wg.Wait()
	won, _ := h.get(1)
	var refused int
	for _, err := range errs {
		if errors.Is(err, errHomePromised) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if refused != 1 || won.Gen != 1 || (won.Home != "loc2" && won.Home != "loc3") {
		t.Fatalf("two homes of generation 1 at once: %d refused, recorded %+v; want exactly one recorded", refused, won)
	}
	if err := h.record(1, won); err != nil {
		t.Fatalf("the recorded home again: %v", err)
	}
	again, err := loadHomes(dir)
	if err != nil {
		t.Fatal(err)
	}
	other := homeRecord{Home: "loc2", Gen: 1}
	if won.Home == "loc2" {
		other.Home = "loc3"
	}
	if err := again.record(1, other); !errors.Is(err, errHomePromised) {
		t.Fatalf("after a restart, the other home of generation 1: %v, want errHomePromised", err)
	}
	if err := again.record(1, homeRecord{Home: "loc1", Gen: 0}); !errors.Is(err, errHomePromised) {
		t.Fatalf("an older generation: %v, want errHomePromised", err)
	}
	if err := again.record(1, homeRecord{Home: other.Home, Gen: 2}); err != nil {
		t.Fatalf("the next generation: %v", err)
	}
}
