package testenv

import "syscall"

// sysProcAttr makes the kernel kill influxd when the test binary dies, so a
// killed `go test` does not leave servers behind. (Pdeathsig is tied to the OS
// thread that started the child; the Go runtime does not retire threads of
// goroutines that never call runtime.LockOSThread, which test code does not.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
