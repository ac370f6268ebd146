//go:build reliability

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// TestReliabilityConcurrency starts 10 `ccboot repair` on one root while
// the run lock is held, then lets go. All must serialize on the lock (no
// two runs between their start and done log lines overlap), every one must
// say who held the lock while it waited, all exit 0, and the tree must be
// the one a single run leaves.
func TestReliabilityConcurrency(t *testing.T) {
	t.Parallel()
	const n = 10
	// Deferred, so the figure line is printed even when a check stops the test.
	defer func() { figureOK(t, "concurrency", !t.Failed()) }()
	imds := aemmtest.Start(t, aemmtest.Default())
	ref := newRoot(t)
	if r := runBin(t, ccbootBin, nil, "repair", "--root", ref, "--imds-endpoint", imds); r.code != 0 {
		t.Fatalf("single run: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	want := snapshot(t, ref)

	root := newRoot(t)
	// Hold the lock as a first run would, so every one of the 10 has to
	// wait and say so. The holder (this test) is not ccboot: no run may
	// name its PID, though the lock file records it.
	mustMkdir(t, filepath.Join(root, "run/ccboot"))
	if err := os.Chmod(filepath.Join(root, "run/ccboot"), 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(root, "run/ccboot/lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	lock.WriteString(strconv.Itoa(os.Getpid()) + "\n")

	type proc struct {
		cmd    *exec.Cmd
		stdout bytes.Buffer
		stderr *safeBuffer
	}
	procs := make([]*proc, n)
	for i := range procs {
		p := &proc{stderr: &safeBuffer{}}
		p.cmd = exec.Command(ccbootBin, "repair", "--root", root, "--imds-endpoint", imds)
		p.cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET=")
		p.cmd.Stdout, p.cmd.Stderr = &p.stdout, p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = p
	}
	// Release the lock once all 10 are waiting.
	deadline := time.Now().Add(30 * time.Second)
	for {
		waiting := 0
		for _, p := range procs {
			if strings.Contains(p.stderr.String(), "ccboot: waiting for another ") {
				waiting++
			}
		}
		if waiting == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d runs report waiting for the lock", waiting, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lock.Close()

	pids := map[int]bool{}
	for _, p := range procs {
		pids[p.cmd.Process.Pid] = true
	}
	holder := regexp.MustCompile(`^ccboot: waiting for another (?:process|ccboot \(pid ([0-9]+)\)) that holds the run lock$`)
	for i, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("run %d: %v\n%s%s", i, err, p.stdout.String(), p.stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
		m := holder.FindStringSubmatch(lines[0])
		if len(lines) != 1 || m == nil {
			t.Errorf("run %d stderr: want one line naming the holder, got:\n%s", i, p.stderr.String())
			continue
		}
		if m[1] == "" {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); !pids[pid] || pid == p.cmd.Process.Pid {
			t.Errorf("run %d named pid %d as the holder, which is not another ccboot of this test", i, pid)
		}
	}
	if err := serialized(filepath.Join(root, "var/log/ccboot.log"), n); err != nil {
		t.Error(err)
	}
	if d := diffTrees(want, snapshot(t, root)); len(d) > 0 {
		t.Errorf("10 concurrent runs left a different tree than one run:\n%s", strings.Join(d, "\n"))
	}
	if l := leftovers(t, root); len(l) > 0 {
		t.Errorf("left behind: %v", l)
	}
}

// serialized reads ccboot's JSON log and checks that the n converging runs
// each logged start and done, one run after another.
func serialized(logPath string, n int) error {
	f, err := os.Open(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	var seq []string
	running := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Msg  string `json:"msg"`
			PID  int    `json:"pid"`
			Mode string `json:"mode"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Mode != "repair" {
			continue
		}
		switch l.Msg {
		case "start":
			running++
			if running > 1 {
				return fmt.Errorf("pid %d started while another run was in progress: %v", l.PID, seq)
			}
			seq = append(seq, fmt.Sprintf("start %d", l.PID))
		case "done":
			running--
			seq = append(seq, fmt.Sprintf("done %d", l.PID))
		}
	}
	if len(seq) != 2*n {
		return fmt.Errorf("log has %d start/done lines, want %d: %v", len(seq), 2*n, seq)
	}
	return sc.Err()
}

// safeBuffer is a bytes.Buffer a child process writes while the test reads.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
