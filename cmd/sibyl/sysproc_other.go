//go:build !linux

package main

import "syscall"

// childSysProcAttr: without Pdeathsig outside Linux, dev's own shutdown path is what
// stops its children.
func childSysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
