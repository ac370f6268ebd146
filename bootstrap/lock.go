package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// LockDir and LockPath serialise runs on one root. They live under /run so
// a reboot clears them; flock is released by the kernel when the holder
// dies, so a killed run never leaves a stale lock. flock works on a
// read-only descriptor, so anyone who can open the file can hold the lock
// and stop every run: the directory is root's alone (0700) and the file
// 0600, and status as another user cannot test the lock at all.
const (
	LockDir  = "/run/ccboot"
	LockPath = LockDir + "/lock"
)

// ErrLockNotReadable is wrapped when the lock cannot be tested because this
// user may not open it (status run without root).
var ErrLockNotReadable = errors.New("the run lock is root's alone")

// Lock is a held run lock.
type Lock struct{ f *os.File }

// LockBusyError says who holds the lock, for the waiter's message.
type LockBusyError struct {
	Path    string
	Holder  int // 0 when the holder is not known to be a live ccboot
	Waited  time.Duration
	Timeout bool
}

func (e *LockBusyError) Error() string {
	return fmt.Sprintf("%s holds %s and did not finish within %s; wait for it (`ccboot status --wait`) or raise [ccboot] lock_timeout", HolderName(e.Holder), e.Path, e.Waited.Round(time.Second))
}

// AcquireLock takes the run lock, waiting up to timeout. onWait is called
// once, with the holder's PID (0 if unknown), if it has to wait.
func AcquireLock(ctx context.Context, sys *fsroot.Tree, timeout time.Duration, onWait func(holder int)) (*Lock, error) {
	f, err := openLock(sys)
	if err != nil {
		return nil, err
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

// openLock opens (creating) the lock file in its root-only directory. A
// directory or file owned by someone else is refused, not adopted: its
// owner could hold the lock or have linked the name elsewhere. A wrong
// mode on our own is repaired.
func openLock(sys *fsroot.Tree) (*os.File, error) {
	me := os.Geteuid()
	// /run is created in a bare root, and otherwise left as it is.
	if _, err := sys.Lstat("run"); errors.Is(err, fs.ErrNotExist) {
		if _, err := sys.EnsureDir("run", fsroot.FileSpec{Mode: 0o755, UID: fsroot.KeepOwner, GID: fsroot.KeepOwner}); err != nil {
			return nil, fmt.Errorf("lock directory: %w", err)
		}
	}
	// Through /run as a tree of its own: EnsureDir gives missing parents
	// the same spec, and /run must never become 0700.
	run, err := sys.Sub("run")
	if err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	defer run.Close()
	const dir, file = "ccboot", "ccboot/lock"
	fi, err := run.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("lock directory %s: %w", sys.Path(LockDir), err)
	case !fi.IsDir():
		return nil, fmt.Errorf("lock directory %s is a %s, not a directory; remove it and rerun", sys.Path(LockDir), fsroot.Kind(fi.Mode()))
	default:
		if uid, _ := fsroot.Owner(fi); uid != me {
			return nil, fmt.Errorf("lock directory %s is owned by uid %d, not %d: someone else could hold the lock; remove it (rm -r %s) and rerun", sys.Path(LockDir), uid, me, sys.Path(LockDir))
		}
	}
	if _, err := run.EnsureDir(dir, fsroot.FileSpec{Mode: 0o700, UID: me, GID: fsroot.KeepOwner}); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	f, err := run.OpenFile(file, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w (remove it and rerun)", sys.Path(LockPath), err)
	}
	lfi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", sys.Path(LockPath), err)
	}
	st, _ := lfi.Sys().(*syscall.Stat_t)
	switch {
	case !lfi.Mode().IsRegular():
		f.Close()
		return nil, fmt.Errorf("lock %s is a %s; remove it and rerun", sys.Path(LockPath), fsroot.Kind(lfi.Mode()))
	case st != nil && (int(st.Uid) != me || st.Nlink != 1):
		f.Close()
		return nil, fmt.Errorf("lock %s is owned by uid %d with %d links; remove it and rerun", sys.Path(LockPath), st.Uid, st.Nlink)
	}
	if lfi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, fmt.Errorf("chmod lock %s: %w", sys.Path(LockPath), err)
		}
	}
	return f, nil
}

// Release drops the lock.
func (l *Lock) Release() error { return l.f.Close() }

// LockHeld reports whether some process holds the run lock right now, and
// its PID when that is a live ccboot. A user who may not open the lock gets
// an error wrapping ErrLockNotReadable: they cannot tell.
func LockHeld(sys *fsroot.Tree) (bool, int, error) {
	f, err := sys.OpenFile(LockPath, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, 0, nil
	case errors.Is(err, fs.ErrPermission):
		return false, 0, fmt.Errorf("%w (%s); run as root to wait for a run: sudo ccboot status --wait", ErrLockNotReadable, sys.Path(LockDir))
	case err != nil:
		return false, 0, fmt.Errorf("open lock %s: %w", sys.Path(LockPath), err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return true, readHolder(f), nil
	}
	return false, 0, nil
}

// readHolder is the PID recorded in the lock file, but only if that process
// is alive and is ccboot: the file keeps the last holder's PID after it
// exits, and the number may since belong to anything.
func readHolder(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 || !isCcboot("/proc", pid) {
		return 0
	}
	return pid
}

// isCcboot reports whether process pid (under the proc file system at
// procDir) runs ccboot: its command name is "ccboot" (or a test build's
// "ccboot-..."), or it runs the same executable as this process. The host's /proc is the right one for --root
// too: the holder of a root's lock is a process on this host.
func isCcboot(procDir string, pid int) bool {
	dir := filepath.Join(procDir, strconv.Itoa(pid))
	if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		if c := strings.TrimSpace(string(comm)); c == "ccboot" || strings.HasPrefix(c, "ccboot-") {
			return true
		}
	}
	exe, err := os.Stat(filepath.Join(dir, "exe"))
	if err != nil {
		return false
	}
	self, err := os.Stat(filepath.Join(procDir, "self", "exe"))
	return err == nil && os.SameFile(exe, self)
}

// HolderName names the lock's holder for messages: the PID only when it is
// known to be a live ccboot (see readHolder).
func HolderName(pid int) string {
	if pid > 0 {
		return fmt.Sprintf("another ccboot (pid %d)", pid)
	}
	return "another process"
}
