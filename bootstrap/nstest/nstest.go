// Package nstest runs test code in Linux namespaces of its own: a network
// namespace with only loopback (so a test can put IMDS's addresses on lo and
// load nftables rules without touching the host), or a private mount
// namespace (to bind a stand-in over a system directory). Tests only.
package nstest

import (
	"net"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// Run calls fn on an OS thread that first unshares flags (CLONE_NEWNET,
// CLONE_NEWNS, ...), and waits for it. The thread is never unlocked, so Go
// ends it with the goroutine and no other code ever runs in the namespaces;
// sockets made and processes started in fn live there. fn is not the test's
// goroutine: it reports with t.Error and returns, never t.Fatal.
func Run(t *testing.T, flags int, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := syscall.Unshare(flags); err != nil {
			t.Errorf("unshare(%#x): %v", flags, err)
			return
		}
		if flags&syscall.CLONE_NEWNS != 0 {
			// Mounts made in fn must not propagate back to the host.
			if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
				t.Errorf("make / private: %v", err)
				return
			}
		}
		if flags&syscall.CLONE_NEWNET != 0 && !Sh(t, "ip", "link", "set", "lo", "up") {
			return
		}
		fn()
	}()
	<-done
}

// Sh runs a command, reporting its output with t.Error when it fails.
func Sh(t *testing.T, args ...string) bool {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		return false
	}
	return true
}

// AcceptAndClose listens on addr of network ("tcp" with port 0 picks a
// port; "unix" a socket path) and closes every
// connection it accepts: enough for a probe that only asks whether it can
// connect. It returns the address listened on, "" (after t.Error) when it
// cannot listen. Closed with the test.
func AcceptAndClose(t *testing.T, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Errorf("listen %s: %v", addr, err)
		return ""
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}
