package node

import (
	"reflect"
	"sync"

	"github.com/sibylhq/sibyl/command"
)

// tokenBook holds the roles and token hashes of the latest directory (docs/protocol.md §7)
// for the API layer, which resolves its callers' tokens with it. A revocation reaches the
// node with the directory that carries it (the long poll answers as soon as the controllers
// commit it), and changed wakes the API layer, which checks its open connections again.
type tokenBook struct {
	mu      sync.Mutex
	index   uint64
	roles   []command.Role
	tokens  []command.TokenInfo
	book    *command.Book
	changed chan struct{}
}

// update adopts d's roles and tokens when d is newer and they differ from the book's.
func (b *tokenBook) update(d *command.Directory) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.book != nil && d.Index <= b.index {
		return
	}
	b.index = d.Index
	if b.book != nil && reflect.DeepEqual(b.roles, d.Roles) && reflect.DeepEqual(b.tokens, d.Tokens) {
		return
	}
	b.roles, b.tokens = d.Roles, d.Tokens
	b.book = command.NewBook(d.Roles, d.Tokens)
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

// Tokens returns the roles and tokens of the node's latest directory as a book, and a
// channel closed when they change.
func (n *Node) Tokens() (*command.Book, <-chan struct{}) { return n.tokens.current() }
