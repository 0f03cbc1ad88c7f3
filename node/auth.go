package node

import (
	"reflect"
	"sort"
	"sync"

	"github.com/sibylhq/sibyl/command"
)

// tokenBook holds the roles and token hashes of every location's latest directory
// (docs/protocol.md §7, docs/security.md) for the API layer, which resolves its callers'
// tokens with it: a token made at any location is valid at this node, with its role as
// that location defines it, the own location's first. A revocation reaches the node with
// the directory that carries it (the long poll answers as soon as the controllers commit
// it), and changed wakes the API layer, which checks its open connections again.
type tokenBook struct {
	mu      sync.Mutex
	own     string
	locs    map[string]*tokenPart
	book    *command.Book
	changed chan struct{}
}

// tokenPart is one location's roles and tokens, as of its directory index.
type tokenPart struct {
	index  uint64
	roles  []command.Role
	tokens []command.TokenInfo
}

// update adopts the roles and tokens of d, location loc's directory, when d is newer and
// they differ from what the book has of loc.
func (b *tokenBook) update(loc string, d *command.Directory) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.locs[loc]
	if p != nil && d.Index <= p.index {
		return
	}
	if p == nil {
		if b.locs == nil {
			b.locs = map[string]*tokenPart{}
		}
		p = &tokenPart{}
		b.locs[loc] = p
	} else if reflect.DeepEqual(p.roles, d.Roles) && reflect.DeepEqual(p.tokens, d.Tokens) {
		p.index = d.Index
		return
	}
	p.index, p.roles, p.tokens = d.Index, d.Roles, d.Tokens
	locs := make([]string, 0, len(b.locs))
	for l := range b.locs {
		if l != b.own {
			locs = append(locs, l)
		}
	}
	sort.Strings(locs)
	parts := make([]command.BookPart, 0, len(b.locs))
	if o := b.locs[b.own]; o != nil {
		parts = append(parts, command.BookPart{Roles: o.roles, Tokens: o.tokens})
	} else {
		parts = append(parts, command.BookPart{}) // Role answers for the own location only
	}
	for _, l := range locs {
		parts = append(parts, command.BookPart{Roles: b.locs[l].roles, Tokens: b.locs[l].tokens})
	}
	b.book = command.NewBookOf(parts...)
	if b.changed != nil {
		close(b.changed)
	}
	b.changed = make(chan struct{})
}

// current returns the book (nil before the first directory) and a channel closed when it
// changes.
func (b *tokenBook) current() (*command.Book, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return b.book, b.changed
}

// Tokens returns the roles and tokens of every location's latest directory as a book, and
// a channel closed when they change.
func (n *Node) Tokens() (*command.Book, <-chan struct{}) { return n.tokens.current() }
