package command

import (
	"crypto/sha256"
	"crypto/subtle"
)

// SecretHeader carries the cluster secret on every call between Sibyl processes: node to
// node, node to controller, controller to node and controller to controller (docs/protocol.md
// §7). A process configured with a secret refuses an internal call without it with
// unauthorized (HTTP 401).
const SecretHeader = "X-Sibyl-Secret"

// SecretOK reports whether got is the configured secret want. An empty want accepts
// anything: no secret is configured. Both are hashed first, so the comparison takes the
// same time whatever their lengths and wherever they differ.
func SecretOK(got, want string) bool {
	if want == "" {
		return true
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// TokenIn reports whether token is one of tokens, comparing every one in constant time.
// An empty token is never accepted.
func TokenIn(token string, tokens []string) bool {
	if token == "" {
		return false
	}
	g := sha256.Sum256([]byte(token))
	found := 0
	for _, t := range tokens {
		w := sha256.Sum256([]byte(t))
		found |= subtle.ConstantTimeCompare(g[:], w[:])
	}
	return found == 1
}
