//go:build crashhook

package fsroot

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// CrashPoint is the crash-injection hook of a test build (go build -tags
// crashhook), used by the crash-consistency suite instead of killing at a
// random moment:
//
//   - CCBOOT_CRASH_LOG=FILE appends every point's label to FILE, one a line,
//     so a test learns the points of an uninterrupted run.
//   - CCBOOT_CRASH_AT=LABEL kills the process with SIGKILL at that point;
//     CCBOOT_CRASH_AT=N (a number) at the Nth point reached.
//   - CCBOOT_PAUSE_AT=LABEL with CCBOOT_PAUSE_DIR=DIR stops at that point
//     instead: it creates DIR/paused, waits until DIR/resume exists (at
//     most a minute), then goes on. The race suite swaps files in that
//     window, so a race that needs luck in real life happens every time.
//
// A label is "site detail#k": k counts how often this process reached that
// site with that detail. Steps run side by side, so the global order of
// points differs between runs, but each label names the same moment in
// every run. When the process leads its own process group (the test starts
// it so, like systemd's per-unit cgroup), the whole group is killed, so no
// orphaned child (mkswap, groupadd) outlives it.
//
// Package-level state is acceptable here only because this file exists in
// the crash-test build alone.
func CrashPoint(site, detail string) { hook.hit(site + " " + detail) }

var hook = newCrashHook()

type crashHook struct {
	mu     sync.Mutex
	seen   map[string]int
	total  int
	log    *os.File
	at     string
	atN    int
	pause  string
	pdir   string
	active bool
}

func newCrashHook() *crashHook {
	h := &crashHook{seen: map[string]int{}, at: os.Getenv("CCBOOT_CRASH_AT")}
	if n, err := strconv.Atoi(h.at); err == nil {
		h.atN, h.at = n, ""
	}
	if p := os.Getenv("CCBOOT_CRASH_LOG"); p != "" {
		f, err := os.OpenFile(filepath.Clean(p), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "crashhook: %v\n", err)
			os.Exit(99)
		}
		h.log = f
	}
	h.pause, h.pdir = os.Getenv("CCBOOT_PAUSE_AT"), os.Getenv("CCBOOT_PAUSE_DIR")
	h.active = h.log != nil || h.at != "" || h.atN > 0 || (h.pause != "" && h.pdir != "")
	return h
}

func (h *crashHook) hit(point string) {
	if !h.active {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen[point]++
	h.total++
	label := point + "#" + strconv.Itoa(h.seen[point])
	if h.log != nil {
		// One write per line with O_APPEND: complete lines even if killed.
		_, _ = h.log.WriteString(label + "\n")
	}
	if label == h.pause && h.pdir != "" {
		h.wait()
	}
	if label == h.at || h.total == h.atN {
		pid := os.Getpid()
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		select {} // never return into the code after the point
	}
}

// wait signals the pause and blocks (holding the hook's lock, so no other
// point passes either) until the test says resume.
func (h *crashHook) wait() {
	if err := os.WriteFile(filepath.Join(h.pdir, "paused"), nil, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "crashhook: %v\n", err)
		os.Exit(99)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(h.pdir, "resume")); err == nil {
			return
		}
	}
	fmt.Fprintln(os.Stderr, "crashhook: no resume within a minute")
	os.Exit(99)
}
