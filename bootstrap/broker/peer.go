package broker

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// peer is who is on the other end of a connection, in the kernel's words
// (SO_PEERCRED), taken when it connected: nothing the caller sends.
type peer struct {
	UID, PID int
	// pidfd pins the process (SO_PEERPIDFD, Linux 6.5+; -1 without it), so
	// a pid reused after the caller exited is noticed.
	pidfd int
}

func peerOf(c *net.UnixConn) (peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer{}, err
	}
	p := peer{pidfd: -1}
	var credErr error
	err = raw.Control(func(fd uintptr) {
		var cred *unix.Ucred
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr != nil {
			return
		}
		p.UID, p.PID = int(cred.Uid), int(cred.Pid)
		if pfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			p.pidfd = pfd
		}
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return peer{}, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	return p, nil
}

func (p peer) close() {
	if p.pidfd >= 0 {
		_ = unix.Close(p.pidfd)
	}
}

// sameProcess reports whether the connecting process is still the one
// behind PID (alive or a zombie: either way the pid was not reused).
func (p peer) sameProcess() bool {
	if p.pidfd < 0 {
		return true // older kernel: the pid alone
	}
	// EPERM: the process is there but not ours to signal (the broker's
	// unit has no CAP_KILL, and callers are another uid); only ESRCH says
	// it has exited.
	err := unix.PidfdSendSignal(p.pidfd, 0, nil, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// cgroupOf reads the process's cgroup v2 path from /proc/PID/cgroup.
// Exactly one "0::" line is accepted: a cgroup name with a newline in it
// (which a user can create in a delegated subtree) could otherwise forge one.
func cgroupOf(pid int) (string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	return parseCgroup(pid, data)
}

func parseCgroup(pid int, data []byte) (string, error) {
	var found []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			found = append(found, rest)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("/proc/%d/cgroup has %d cgroup v2 lines, want 1", pid, len(found))
	}
	if !strings.HasPrefix(found[0], "/") || path.Clean(found[0]) != found[0] {
		return "", fmt.Errorf("/proc/%d/cgroup: unexpected cgroup path %q", pid, found[0])
	}
	return found[0], nil
}

// within reports whether cgroup is dir or below it.
func within(cgroup, dir string) bool {
	return cgroup == dir || strings.HasPrefix(cgroup, dir+"/")
}

// rootOwnedCgroup checks that the approved unit's cgroup directory is
// root's and writable by no one else: then the user cannot create a child
// in it nor move a process into it, so membership is root's word.
func rootOwnedCgroup(mount, cgroup string) error {
	p := path.Join(mount, cgroup)
	for _, name := range []string{p, path.Join(p, "cgroup.procs")} {
		fi, err := os.Lstat(name)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("%s is not root's alone (delegated?)", name)
		}
	}
	return nil
}

// CgroupMount finds the cgroup v2 hierarchy: /sys/fs/cgroup on a unified
// system, /sys/fs/cgroup/unified on a hybrid one.
func CgroupMount() (string, error) {
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p, nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified: %w", fs.ErrNotExist)
}
