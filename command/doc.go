// Package command holds Sibyl's resource and ID types, the command set, validation and
// the deterministic execution of a command against a resource into a log entry's effect.
//
// Everything here is pure: no clocks, no I/O, no randomness except what the caller passes
// in (ExecContext, the entropy of an IDGen). The main of a group executes a command once,
// and every copy applies the resulting Effect; copies never execute commands themselves.
package command
