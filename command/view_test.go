package command

import (
	"errors"
	"reflect"
	"testing"
)

// mapView is an in-memory View: the committed state of one group, folded from effects.
type mapView struct {
	res   map[string]*Resource
	tombs map[string]Tombstone
	keys  map[string]*DedupeRecord
	tks   map[string]TicketState
	err   error // when set, every read fails with it
}

func newMapView() *mapView {
	return &mapView{res: map[string]*Resource{}, tombs: map[string]Tombstone{}, keys: map[string]*DedupeRecord{},
		tks: map[string]TicketState{}}
}

func (m *mapView) Resource(rid string) (*Resource, bool, error) {
	if m.err != nil {
		return nil, false, m.err
	}
	if r, ok := m.res[rid]; ok {
		return r, false, nil
	}
	_, tomb := m.tombs[rid]
	return nil, tomb, nil
}

func (m *mapView) Dedupe(key string) (*DedupeRecord, error) {
	if m.err != nil {
		return nil, m.err
	}
	return m.keys[key], nil
}

func (m *mapView) Ticket(rid string) (TicketState, error) {
	if m.err != nil {
		return TicketState{}, m.err
	}
	return m.tks[rid], nil
}

// apply folds e into the view the way a copy does, after taking it through the codec as
// the log would, so every effect the tests make is also checked to round-trip.
func (m *mapView) apply(t *testing.T, e *Effect) {
	t.Helper()
	b, err := EncodeEffect(e)
	if err != nil {
		t.Fatalf("EncodeEffect: %v", err)
	}
	got, err := DecodeEffect(b)
	if err != nil {
		t.Fatalf("DecodeEffect(%s): %v", b, err)
	}
	if !reflect.DeepEqual(&got, e) {
		t.Fatalf("effect changed through the codec:\n got %+v\nwant %+v", got, *e)
	}
	switch got.Kind {
	case EffectPut:
		m.res[got.RID] = got.Resource
	case EffectDelete:
		delete(m.res, got.RID)
		m.tombs[got.RID] = Tombstone{RID: got.RID, Version: got.Version, At: got.At}
	}
	if got.Ticket != nil {
		m.tks[got.RID] = *got.Ticket
	}
	if got.Dedupe != nil {
		m.keys[got.Dedupe.Key] = got.Dedupe
	}
}

var errDisk = errors.New("disk on fire")
