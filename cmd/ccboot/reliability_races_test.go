//go:build reliability

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// raceSecret is in the root-only file the racer links into the home; it
// must never show up in a file the user can read or in ccboot's output.
const raceSecret = "RACESECRETwJalrXUtnFEMIK7MDENG"

// raceVariant is one attack of issue 14 finding 1: the user makes root's
// next repair do some work on a managed file, and while ccboot works on it
// renames a hard link to a root-only file onto its name.
type raceVariant struct {
	name   string
	file   string // managed file, relative to the home
	target string // root-only file linked in, relative to the root
	// drift makes the repair do work on file: a mode change (ccboot fixes
	// it through a descriptor: the chown/chmod variant) or a content change
	// (ccboot reads the file and writes it back: the read/copy variant).
	drift func(t *testing.T, home string)
}

var raceVariants = []raceVariant{
	{"chown: ~/.aws/config mode fix", ".aws/config", "etc/shadow", func(t *testing.T, home string) {
		if err := os.Chmod(filepath.Join(home, ".aws/config"), 0o644); err != nil {
			t.Fatal(err)
		}
	}},
	{"read: ~/.aws/config merge", ".aws/config", "root/.aws/credentials", func(t *testing.T, home string) {
		p := filepath.Join(home, ".aws/config")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// Drop ccboot's sections: the repair reads the file and writes them back.
		keep, _, _ := strings.Cut(string(b), "[profile ")
		if err := os.WriteFile(p, []byte(keep), 0o600); err != nil {
			t.Fatal(err)
		}
	}},
	{"read: ~/.bashrc alias block", ".bashrc", "root/.aws/credentials", func(t *testing.T, home string) {
		if err := os.WriteFile(filepath.Join(home, ".bashrc"), []byte("# ~/.bashrc\nexport EDITOR=vi\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}},
}

// raceRoot is a converged root with the drift planted and the root-only
// targets in place, and the flags for a repair of the two home steps.
func raceRoot(t *testing.T, imds string, v raceVariant) (root string, flags []string) {
	t.Helper()
	root = newRoot(t)
	flags = []string{"--root", root, "--imds-endpoint", imds, "--only", "aws-config,aliases"}
	if r := runBin(t, ccbootBin, nil, append([]string{"run"}, flags...)...); r.code != 0 {
		t.Fatalf("first run: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	mustWrite(t, filepath.Join(root, "root/.aws/credentials"), "[default]\naws_access_key_id = AKIAROOT\naws_secret_access_key = "+raceSecret+"\n", 0o600)
	os.Chmod(filepath.Join(root, "root"), 0o700)
	v.drift(t, filepath.Join(root, "home/ec2-user"))
	return root, flags
}

// TestReliabilityHostileHomeRaces forces the race of issue 14 finding 1
// deterministically: the crash-hook build stops at each point where ccboot
// works on the managed file (CCBOOT_PAUSE_AT), the test renames a hard link
// to a root-only file onto the file's name (as a user can where
// fs.protected_hardlinks is 0), and lets ccboot go on. Whatever ccboot
// does then, nothing outside the home may change (the root-only file keeps
// owner, mode and content), and the secret in it must not reach any other
// file in the home, the state file or ccboot's output.
func TestReliabilityHostileHomeRaces(t *testing.T) {
	t.Parallel()
	bin := crashBinary(t)
	imds := aemmtest.Start(t, aemmtest.Default())

	type raceCase struct {
		v     raceVariant
		point string
	}
	var cases []raceCase
	for _, v := range raceVariants {
		// An undisturbed repair lists the points on the way.
		_, flags := raceRoot(t, imds, v)
		log := filepath.Join(t.TempDir(), "points")
		if r := runBin(t, bin, []string{"CCBOOT_CRASH_LOG=" + log}, append([]string{"repair"}, flags...)...); r.code != 0 {
			t.Fatalf("%s: undisturbed repair: %d\n%s%s", v.name, r.code, r.stdout, r.stderr)
		}
		data, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if strings.Contains(l, " "+v.file+"#") {
				cases = append(cases, raceCase{v, l})
				n++
			}
		}
		if n < 2 {
			t.Fatalf("%s: only %d points on %s:\n%s", v.name, n, v.file, data)
		}
	}

	var ok atomic.Int32
	t.Cleanup(func() { figure(t, "hostile-home-races", int(ok.Load()), len(cases)) })
	for _, c := range cases {
		t.Run(c.v.name+" at "+c.point, func(t *testing.T) {
			t.Parallel()
			root, flags := raceRoot(t, imds, c.v)
			home := filepath.Join(root, "home/ec2-user")
			target := filepath.Join(root, c.v.target)
			targetBefore := describe(t, target)
			before := outsideHome(snapshot(t, root))

			r := runPaused(t, bin, c.point, func() {
				// The racer: a hard link to the root-only file, renamed
				// onto the managed name in one step.
				tmp := filepath.Join(home, ".race-link")
				if err := os.Link(target, tmp); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, filepath.Join(home, c.v.file)); err != nil {
					t.Fatal(err)
				}
			}, append([]string{"repair"}, flags...)...)

			if got := describe(t, target); got != targetBefore {
				t.Errorf("the root-only %s changed:\n before %s\n after  %s", c.v.target, targetBefore, got)
			}
			if d := diffTrees(before, outsideHome(snapshot(t, root))); len(d) > 0 {
				t.Errorf("outside the home changed:\n%s", strings.Join(d, "\n"))
			}
			for _, leak := range secretLeaks(t, root, target) {
				t.Errorf("the secret reached %s", leak)
			}
			if strings.Contains(r.stdout+r.stderr, raceSecret) {
				t.Errorf("the secret is in ccboot's output:\n%s%s", r.stdout, r.stderr)
			}
			if t.Failed() {
				t.Logf("repair exit %d:\n%s%s", r.code, r.stdout, r.stderr)
			} else {
				ok.Add(1)
			}
		})
	}
}

// runPaused runs bin until it reaches point, calls race, lets it finish.
func runPaused(t *testing.T, bin, point string, race func(), args ...string) binRun {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET=",
		"CCBOOT_PAUSE_AT="+point, "CCBOOT_PAUSE_DIR="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	paused := false
	for deadline := time.Now().Add(time.Minute); !paused && time.Now().Before(deadline); {
		if _, err := os.Stat(filepath.Join(dir, "paused")); err == nil {
			paused = true
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("exited (%v) before reaching %s:\n%s%s", err, point, out.String(), errb.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if !paused {
		cmd.Process.Kill()
		<-exited
		t.Fatalf("did not reach %s within a minute", point)
	}
	race()
	if err := os.WriteFile(filepath.Join(dir, "resume"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-exited:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("no exit after resuming at %s", point)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return binRun{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

// describe is a file's owner, mode and content, for a before/after check.
func describe(t *testing.T, p string) string {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d %v %q", st.Uid, st.Gid, fi.Mode(), b)
}

// outsideHome drops the home from a snapshot (the racer changes it) and the
// root-only targets' link counts are not in snapshots anyway.
func outsideHome(m map[string]entry) map[string]entry {
	for p := range m {
		if p == "home/ec2-user" || strings.HasPrefix(p, "home/ec2-user/") {
			delete(m, p)
		}
	}
	return m
}

// secretLeaks lists files that hold raceSecret: any file in the home other
// than the racer's own link to target, and ccboot's state file and log.
func secretLeaks(t *testing.T, root, target string) []string {
	t.Helper()
	tfi, err := os.Lstat(target)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	check := func(p string) {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || os.SameFile(fi, tfi) {
			return
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(raceSecret)) {
			out = append(out, p)
		}
	}
	filepath.WalkDir(filepath.Join(root, "home"), func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			check(p)
		}
		return nil
	})
	check(filepath.Join(root, "var/lib/ccboot/state.json"))
	check(filepath.Join(root, "var/log/ccboot.log"))
	return out
}
