package main

import "syscall"

// childSysProcAttr makes the kernel SIGKILL a dev child when dev dies, however it dies
// (even by SIGKILL), so no child outlives it. Pdeathsig fires when the *thread* that
// started the child exits, so runDev locks its goroutine to its thread for its lifetime.
// The child stays in dev's process group, so a terminal's Ctrl-C reaches it too.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
