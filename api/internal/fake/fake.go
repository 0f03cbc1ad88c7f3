// Package fake is an in-memory stand-in for a Sibyl node, for the tests of api and
// api/client. One map holds the resources of one group (server 1); every op of the
// protocol gets a plausible answer, without replication. Tests steer it: Block holds gets
// of a rid until Release, FailNext makes the next calls of an op fail, SetHealthy flips
// /healthz, SetStatus sets the cluster status it reports.
package fake

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sibylhq/sibyl/command"
)

// Group is the one server ID the fake holds resources for.
const Group = 1

// Backend implements api.Backend.
type Backend struct {
	mu        sync.Mutex
	resources map[string]*command.Resource
	keys      map[string]keyed // idempotency key -> first result
	seq       uint64
	fence     uint64
	blocked   map[string]chan struct{}
	waiting   map[string]int // gets held by Block, per rid
	failures  map[string][]Failure
	events    []logged            // every committed change, for subscriptions
	listeners map[*Session]Outbox // sessions that may subscribe
	status    *command.Status     // set by SetStatus; nil: the default

	healthy        atomic.Bool
	sessionsOpened atomic.Int64
	sessionsClosed atomic.Int64
}

type keyed struct {
	fingerprint string
	reply       command.Reply
}

// Failure is an injected error. With Applied the op takes effect first, as a write whose
// outcome the client cannot know.
type Failure struct {
	Err     *command.Error
	Applied bool
}

// New returns an empty, healthy backend.
func New() *Backend {
	b := &Backend{
		resources: map[string]*command.Resource{},
		keys:      map[string]keyed{},
		blocked:   map[string]chan struct{}{},
		waiting:   map[string]int{},
		failures:  map[string][]Failure{},
		listeners: map[*Session]Outbox{},
	}
	b.healthy.Store(true)
	return b
}

// NewSession opens a session; with an Outbox (a WebSocket connection) it may subscribe.
func (b *Backend) NewSession(out Outbox) *Session {
	b.sessionsOpened.Add(1)
	s := &Session{b: b, subs: map[string]*fakeSub{}}
	if out != nil {
		b.mu.Lock()
		b.listeners[s] = out
		b.mu.Unlock()
	}
	return s
}

// Sessions reports how many sessions were opened and closed.
func (b *Backend) Sessions() (opened, closed int64) {
	return b.sessionsOpened.Load(), b.sessionsClosed.Load()
}

func (b *Backend) Healthy() bool      { return b.healthy.Load() }
func (b *Backend) SetHealthy(ok bool) { b.healthy.Store(ok) }
func (b *Backend) Status(ctx context.Context) (*command.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.status != nil {
		st := *b.status
		return &st, nil
	}
	main := uint16(Group)
	return &command.Status{
		Nodes:  []command.StatusNode{{ID: Group, Addr: "127.0.0.1:0", State: command.NodeUp}},
		Groups: []command.StatusGroup{{Server: Group, Main: &main, Epoch: 1, Seq: b.seq}},
	}, nil
}

// SetStatus makes Status answer st, as a cluster of several nodes over this one backend
// would; nil restores the default (one node at 127.0.0.1:0, main of Group). The caller
// does not change st afterwards.
func (b *Backend) SetStatus(st *command.Status) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status = st
}

// Block makes gets of rid wait until Release(rid) (or the request's context ends).
func (b *Backend) Block(rid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.blocked[rid] = make(chan struct{})
}

// Release lets the gets of rid held by Block go on.
func (b *Backend) Release(rid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch, ok := b.blocked[rid]; ok {
		close(ch)
		delete(b.blocked, rid)
	}
}

// Waiting reports how many gets of rid are held by Block.
func (b *Backend) Waiting(rid string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting[rid]
}

func (b *Backend) addWaiting(rid string, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waiting[rid] += n
}

// FailNext queues failures for the next calls of op, one per call.
func (b *Backend) FailNext(op string, fs ...Failure) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures[op] = append(b.failures[op], fs...)
}

// Count returns the number of live resources.
func (b *Backend) Count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.resources)
}

// Session implements api.Session.
type Session struct {
	b    *Backend
	mu   sync.Mutex
	subs map[string]*fakeSub
	open []*fakeSub // in subscribe order
}

func (s *Session) Close() {
	s.b.mu.Lock()
	delete(s.b.listeners, s)
	s.b.mu.Unlock()
	s.b.sessionsClosed.Add(1)
}

// Start executes req at once (in arrival order, like a main would), except a get of a
// blocked rid, which waits in the returned function.
func (s *Session) Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	b := s.b
	b.mu.Lock()
	gate := b.blocked[req.RID]
	var failure *Failure
	if q := b.failures[req.Op]; len(q) > 0 {
		failure = &q[0]
		b.failures[req.Op] = q[1:]
	}
	b.mu.Unlock()
	if req.Op == command.OpSubscribe || req.Op == command.OpUnsubscribe {
		return s.subscription(req)
	}
	if gate != nil && req.Op == command.OpGet {
		return func() (*command.Reply, error) {
			b.addWaiting(req.RID, 1)
			defer b.addWaiting(req.RID, -1)
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return b.exec(req)
		}
	}
	if failure != nil {
		if failure.Applied {
			b.exec(req)
		}
		return func() (*command.Reply, error) { return nil, failure.Err }
	}
	rep, err := b.exec(req)
	return func() (*command.Reply, error) { return rep, err }
}

func (b *Backend) exec(req *command.Request) (*command.Reply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if req.Key != "" && command.IsWrite(req.Op) {
		fp := fingerprint(req)
		if k, ok := b.keys[req.Key]; ok {
			if k.fingerprint != fp {
				return nil, command.Errorf(command.CodeConflict, "key %q was used for another request", req.Key)
			}
			rep := k.reply
			rep.Duplicate = true
			return &rep, nil
		}
		rep, err := b.execLocked(req)
		if err == nil {
			b.keys[req.Key] = keyed{fingerprint: fp, reply: *rep}
		}
		return rep, err
	}
	return b.execLocked(req)
}

func fingerprint(req *command.Request) string {
	r := *req
	r.Key = ""
	data, _ := json.Marshal(&r)
	return string(data)
}

func (b *Backend) execLocked(req *command.Request) (*command.Reply, error) {
	switch req.Op {
	case command.OpCreate:
		return b.create(req)
	case command.OpGet:
		res, err := b.find(req.RID)
		if err != nil {
			return nil, err
		}
		return &command.Reply{Resource: res, Seq: b.seq}, nil
	case command.OpUpdate, command.OpPatch:
		return b.change(req)
	case command.OpDelete:
		if _, err := b.writable(req); err != nil {
			return nil, err
		}
		old := b.resources[req.RID]
		delete(b.resources, req.RID)
		b.seq++
		b.recordLocked("deleted", req.RID, old.Type, old.Version+1, nil)
		return &command.Reply{Epoch: 1, Seq: b.seq}, nil
	case command.OpList:
		return b.list(req), nil
	case command.OpAcquireTicket, command.OpRenewTicket:
		if _, err := b.find(req.RID); err != nil {
			return nil, err
		}
		if req.Op == command.OpAcquireTicket {
			b.fence++
		}
		b.seq++
		return &command.Reply{Epoch: 1, Seq: b.seq, Ticket: &command.TicketInfo{Fence: b.fence, ExpiresMs: 1000}}, nil
	}
	return &command.Reply{}, nil // releaseTicket, unsubscribe, admin ops: accepted
}

func (b *Backend) create(req *command.Request) (*command.Reply, error) {
	if req.Type == "" || len(req.Data) == 0 {
		return nil, command.Errorf(command.CodeBadRequest, "create needs type and data")
	}
	if req.Server != nil && *req.Server != Group {
		return nil, command.Errorf(command.CodeNotFound, "no group %d", *req.Server)
	}
	now := time.Now().UTC()
	res := &command.Resource{
		ID:      command.RID{Server: Group, ID: ulid.Make()}.String(),
		Type:    req.Type,
		Version: 1,
		Data:    req.Data,
		Created: now,
		Updated: now,
	}
	b.resources[res.ID] = res
	b.seq++
	b.recordLocked("created", res.ID, res.Type, 1, clone(res))
	return &command.Reply{Resource: clone(res), Epoch: 1, Seq: b.seq}, nil
}

func (b *Backend) change(req *command.Request) (*command.Reply, error) {
	res, err := b.writable(req)
	if err != nil {
		return nil, err
	}
	if req.Op == command.OpUpdate {
		res.Data = req.Data
	} else if res.Data, err = shallowMerge(res.Data, req.Patch); err != nil {
		return nil, err
	}
	res.Version++
	res.Updated = time.Now().UTC()
	b.seq++
	b.recordLocked("updated", res.ID, res.Type, res.Version, clone(res))
	return &command.Reply{Resource: clone(res), Epoch: 1, Seq: b.seq}, nil
}

// writable finds the resource a write targets and checks ifVersion.
func (b *Backend) writable(req *command.Request) (*command.Resource, error) {
	if _, err := command.ParseRID(req.RID); err != nil {
		return nil, err
	}
	res, ok := b.resources[req.RID]
	if !ok {
		return nil, command.Errorf(command.CodeNotFound, "no resource %s", req.RID)
	}
	if req.IfVersion != nil && *req.IfVersion != res.Version {
		return nil, command.Errorf(command.CodeConflict, "version is %d, not %d", res.Version, *req.IfVersion)
	}
	return res, nil
}

func (b *Backend) find(rid string) (*command.Resource, error) {
	if _, err := command.ParseRID(rid); err != nil {
		return nil, err
	}
	res, ok := b.resources[rid]
	if !ok {
		return nil, command.Errorf(command.CodeNotFound, "no resource %s", rid)
	}
	return clone(res), nil
}

func (b *Backend) list(req *command.Request) *command.Reply {
	limit := req.Limit
	if limit <= 0 {
		limit = 100
	}
	ids := make([]string, 0, len(b.resources))
	for id, res := range b.resources {
		if id > req.After && (req.Type == "" || res.Type == req.Type) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	rep := &command.Reply{}
	for i, id := range ids {
		if i == limit {
			rep.Next = ids[i-1]
			break
		}
		rep.Resources = append(rep.Resources, *clone(b.resources[id]))
	}
	return rep
}

// shallowMerge applies the top level of a merge patch, which is all the tests need.
func shallowMerge(data, patch json.RawMessage) (json.RawMessage, error) {
	var doc, p map[string]json.RawMessage
	if json.Unmarshal(data, &doc) != nil || doc == nil {
		doc = map[string]json.RawMessage{}
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return patch, nil // a non-object patch replaces the document
	}
	for k, v := range p {
		if string(v) == "null" {
			delete(doc, k)
		} else {
			doc[k] = v
		}
	}
	return json.Marshal(doc)
}

func clone(r *command.Resource) *command.Resource {
	c := *r
	return &c
}
