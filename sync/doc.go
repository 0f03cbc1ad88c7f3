// Package resync brings a copy of a group up to date: snapshot streaming (sync), recording
// the changes made meanwhile, replaying them, and resync of stale or returning copies.
//
// It is imported as resync so that call sites do not clash with the standard library's
// sync package. The registration protocol it implements is described in docs/ once built.
package resync
