package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// LockPath serialises runs on one root. It lives under /run so a reboot
// clears it; flock is released by the kernel when the holder dies, so a
// killed run never leaves a stale lock.
const LockPath = "/run/ccboot.lock"

// Lock is a held run lock.
type Lock struct{ f *os.File }

// LockBusyError says who holds the lock, for the waiter's message.
type LockBusyError struct {
	Path    string
	Holder  int
	Waited  time.Duration
	Timeout bool
}

func (e *LockBusyError) Error() string {
	who := "another ccboot"
	if e.Holder > 0 {
		who = fmt.Sprintf("another ccboot (pid %d)", e.Holder)
	}
	return fmt.Sprintf("%s holds %s and did not finish within %s; wait for it (`ccboot status --wait`) or raise [ccboot] lock_timeout", who, e.Path, e.Waited.Round(time.Second))
}

// AcquireLock takes the run lock, waiting up to timeout. onWait is called
// once, with the holder's PID, if it has to wait.
func AcquireLock(ctx context.Context, sys *fsroot.Tree, timeout time.Duration, onWait func(holder int)) (*Lock, error) {
	if _, err := sys.EnsureDir("run", fsroot.FileSpec{Mode: 0o755, UID: fsroot.KeepOwner, GID: fsroot.KeepOwner}); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	f, err := sys.OpenFile(LockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", sys.Path(LockPath), err)
	}
	start := time.Now()
	waited := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", sys.Path(LockPath), err)
		}
		holder := readHolder(f)
		if !waited && onWait != nil {
			onWait(holder)
		}
		waited = true
		if time.Since(start) >= timeout {
			f.Close()
			return nil, &LockBusyError{Path: sys.Path(LockPath), Holder: holder, Waited: time.Since(start), Timeout: true}
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() error { return l.f.Close() }

// LockHeld reports whether some process holds the run lock right now, and its PID.
func LockHeld(sys *fsroot.Tree) (bool, int) {
	f, err := sys.OpenFile(LockPath, os.O_RDONLY, 0)
	if err != nil {
		return false, 0
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return true, readHolder(f)
	}
	return false, 0
}

func readHolder(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	return pid
}
