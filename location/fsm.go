package location

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/sibylhq/sibyl/command"
)

// fsm is the raft state machine: the directory, changed only by Apply (in log order) and
// Restore (a whole snapshot). Readers take copies under the read lock, so nothing outside
// the FSM ever holds a slice the FSM mutates.
type fsm struct {
	mu      sync.RWMutex
	st      *dirState
	changed chan struct{} // closed and replaced at every change: wakes long polls
	// results counts applied commands by kind and outcome ("ok" or "refused"), for /metrics.
	results map[[2]string]uint64
}

func newFSM() *fsm {
	return &fsm{st: newDirState(), changed: make(chan struct{}), results: map[[2]string]uint64{}}
}

// applyResult is what Apply returns to the proposer through raft's ApplyFuture.
type applyResult struct {
	Index uint64
	Err   error // a *refusal when the command was refused
}

// Apply implements raft.FSM. A command that does not decode or is refused still moves
// Index: it occupies a log position on every controller alike.
func (f *fsm) Apply(l *raft.Log) any {
	cmd, err := decodeCommand(l.Data)
	kind := "invalid"
	f.mu.Lock()
	defer f.mu.Unlock()
	// Index is set first: a command that completes a promotion records it under its index.
	f.st.Index = l.Index
	if err == nil {
		kind = cmd.kind()
		err = cmd.applyTo(f.st)
	}
	outcome := "ok"
	if err != nil {
		outcome = "refused"
	}
	f.results[[2]string{kind, outcome}]++
	f.notifyLocked()
	return applyResult{Index: l.Index, Err: err}
}

func (f *fsm) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// view returns a deep copy of the state and the channel closed at the next change.
func (f *fsm) view() (*dirState, <-chan struct{}) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.clone(), f.changed
}

// changes returns the channel closed at the next change.
func (f *fsm) changes() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// index returns the index of the last applied command.
func (f *fsm) index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Index
}

// controller returns the registered record of controller id.
func (f *fsm) controller(id string) (controllerRecord, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.st.Controllers[id]
	return r, ok
}

// node returns the record of node id.
func (f *fsm) node(id uint16) (nodeRecord, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n, ok := f.st.Nodes[id]
	return n, ok
}

// group returns a copy of the record of group server.
func (f *fsm) group(server uint16) (command.GroupInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	g, ok := f.st.Groups[server]
	if !ok {
		return command.GroupInfo{}, false
	}
	return cloneGroup(g), true
}

// role returns the role named name.
func (f *fsm) role(name string) (command.Role, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.st.Roles[name]
	return r, ok
}

// token returns the token recorded under hash.
func (f *fsm) token(hash string) (command.TokenInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.st.Tokens[hash]
	return t, ok
}

// commandCounts returns a copy of the per-kind outcome counters.
func (f *fsm) commandCounts() map[[2]string]uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[[2]string]uint64, len(f.results))
	for k, v := range f.results {
		out[k] = v
	}
	return out
}

// snapshotFormat is raised whenever snapshotFile changes incompatibly.
const snapshotFormat = 1

// snapshotFile is the serialised directory: sorted lists, so equal states give equal bytes.
type snapshotFile struct {
	Format      int                  `json:"format"`
	Index       uint64               `json:"index"`
	Controllers []controllerRecord   `json:"controllers"`
	Nodes       []nodeRecord         `json:"nodes"`
	Groups      []command.GroupInfo  `json:"groups"`
	Moved       []command.MovedGroup `json:"moved,omitempty"`
	Promotions  []promotionRecord    `json:"promotions,omitempty"`
	Roles       []command.Role       `json:"roles,omitempty"`
	Tokens      []command.TokenInfo  `json:"tokens,omitempty"`
}

func (s *dirState) snapshotFile() snapshotFile {
	return snapshotFile{
		Format: snapshotFormat, Index: s.Index,
		Controllers: s.sortedControllers(), Nodes: s.sortedNodes(), Groups: s.sortedGroups(), Moved: s.sortedMoved(),
		Promotions: slices.Clone(s.Promotions),
		Roles:      s.sortedRoles(), Tokens: s.sortedTokens(),
	}
}

func (sf snapshotFile) state() (*dirState, error) {
	if sf.Format != snapshotFormat {
		return nil, fmt.Errorf("directory snapshot format %d, want %d", sf.Format, snapshotFormat)
	}
	st := newDirState()
	st.Index = sf.Index
	st.Promotions = sf.Promotions
	for _, c := range sf.Controllers {
		st.Controllers[c.ID] = c
	}
	for _, n := range sf.Nodes {
		st.Nodes[n.ID] = n
	}
	for i := range sf.Groups {
		g := sf.Groups[i]
		if _, dup := st.Groups[g.Server]; dup {
			return nil, fmt.Errorf("directory snapshot holds group %d twice", g.Server)
		}
		st.Groups[g.Server] = &g
	}
	for _, m := range sf.Moved {
		st.Moved[m.Server] = m
	}
	for _, r := range sf.Roles {
		st.Roles[r.Name] = r
	}
	for _, t := range sf.Tokens {
		st.Tokens[t.Hash] = t
	}
	return st, nil
}

// Snapshot implements raft.FSM: a copy taken under the lock, serialised later by Persist
// while Apply goes on.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{file: f.st.snapshotFile()}, nil
}

// Restore implements raft.FSM: it replaces the whole directory.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var sf snapshotFile
	if err := json.NewDecoder(rc).Decode(&sf); err != nil {
		return fmt.Errorf("restore directory snapshot: %w", err)
	}
	st, err := sf.state()
	if err != nil {
		return fmt.Errorf("restore directory snapshot: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	f.notifyLocked()
	return nil
}

type fsmSnapshot struct{ file snapshotFile }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.file); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist directory snapshot at index %d: %w", s.file.Index, err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
