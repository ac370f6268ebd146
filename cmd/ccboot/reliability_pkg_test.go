//go:build reliability

package main

// Package manager faults, in root mode, through a real chroot into the root
// with the fake apt-get/npm of reliability_test.go (fakePMSource): the
// real-boot versions with the distribution's own apt, dnf and npm belong
// to the e2e harness (packaging/e2e).

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// holdLock takes an apt/dpkg lock file (fcntl, as apt and dpkg do) from
// another process and returns its PID and a release function.
func holdLock(t *testing.T, lockFile string) (int, func()) {
	t.Helper()
	cmd := exec.Command(fakePMBinary(t), "--hold-lock", lockFile)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		cmd.Process.Kill()
		t.Fatalf("lock holder: %q", line)
	}
	release := func() { cmd.Process.Kill(); cmd.Wait() }
	t.Cleanup(release)
	return cmd.Process.Pid, release
}

func dpkgHas(t *testing.T, root, pkg string) bool {
	b, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte("Package: "+pkg+"\n"))
}

// TestReliabilityPackageFaults: a held package manager lock (waited for,
// then a clear error at the bound; and the install proceeding when it is
// released in time), a package name that does not exist (named in the
// error), npm without network (bounded retries, then a clear error).
func TestReliabilityPackageFaults(t *testing.T) {
	t.Parallel()
	imds := aemmtest.Start(t, aemmtest.Default())
	var passed atomic.Int32
	const goal = 3
	t.Cleanup(func() { figure(t, "pkg-faults", int(passed.Load()), goal) })
	setup := func(t *testing.T) (string, []string) {
		root := newRoot(t)
		withFakePM(t, root)
		return root, []string{"--root", root, "--imds-endpoint", imds}
	}

	t.Run("apt lock held by another process", func(t *testing.T) {
		t.Parallel()
		root, flags := setup(t)
		const bound = 3 * time.Second
		lockFlags := append([]string{"run", "--set", "packages.lock_timeout=" + bound.String()}, flags...)
		heldRun := func(lockFile, wantLock string) {
			t.Helper()
			holder, release := holdLock(t, filepath.Join(root, lockFile))
			defer release()
			r := runBin(t, ccbootBin, nil, lockFlags...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
			}
			if r.took < bound || r.took > bound+15*time.Second {
				t.Errorf("took %s: want a wait of the bound %s, then an error", r.took, bound)
			}
			line := stepLine(r.stdout, "packages")
			for _, w := range []string{" failed ", "Could not get lock " + wantLock, "held by process " + strconv.Itoa(holder), "waited 3s", "[packages] lock_timeout"} {
				if !strings.Contains(line, w) {
					t.Errorf("packages error lacks %q:\n%s", w, line)
				}
			}
			if strings.Contains(line, "network") {
				t.Errorf("a held lock is blamed on the network:\n%s", line)
			}
			// Claude Code needs nothing from the package manager.
			if cc := stepLine(r.stdout, "claude-code"); !strings.Contains(cc, " changed ") && !strings.Contains(cc, " ok ") {
				t.Errorf("claude-code should converge beside the failed packages step:\n%s", cc)
			}
			if dpkgHas(t, root, "jq") {
				t.Error("jq recorded as installed although apt never got the lock")
			}
		}
		// A fresh image has no package lists: the first apt-get is update,
		// and at first boot cloud-init's apt may hold the lists lock.
		if err := os.Remove(filepath.Join(root, aptListsFile)); err != nil {
			t.Fatal(err)
		}
		heldRun("var/lib/apt/lists/lock", "/var/lib/apt/lists/lock")
		// With lists, install waits for dpkg's frontend lock.
		mustWrite(t, filepath.Join(root, aptListsFile), "fake\n", 0o644)
		heldRun("var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock-frontend")
		// Released within the bound: the install waits and goes through.
		_, release := holdLock(t, filepath.Join(root, "var/lib/dpkg/lock-frontend"))
		go func() { time.Sleep(2 * time.Second); release() }()
		r := runBin(t, ccbootBin, nil, append([]string{"run", "--set", "packages.lock_timeout=30s"}, flags...)...)
		if r.code != 0 || r.took < 2*time.Second {
			t.Fatalf("with the lock released after 2s: exit %d after %s\n%s%s", r.code, r.took, r.stdout, r.stderr)
		}
		if !dpkgHas(t, root, "jq") {
			t.Error("jq not installed once the lock was free")
		}
		if !t.Failed() {
			passed.Add(1)
		}
	})

	t.Run("package name that does not exist", func(t *testing.T) {
		t.Parallel()
		root, flags := setup(t)
		before, _ := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
		r := runBin(t, ccbootBin, nil, append([]string{"run", "--set", "packages.install=unzip, git, jq, nodejs, docker, jqq"}, flags...)...)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
		line := stepLine(r.stdout, "packages")
		for _, w := range []string{" failed ", "apt has no package jqq;", "[packages] install"} {
			if !strings.Contains(line, w) {
				t.Errorf("packages error lacks %q:\n%s", w, line)
			}
		}
		if strings.Contains(line, "jq,") || strings.Contains(line, "package jq ") {
			t.Errorf("error blames packages that exist:\n%s", line)
		}
		if after, _ := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status")); !bytes.Equal(before, after) {
			t.Error("dpkg status changed although apt refused the transaction")
		}
		if !t.Failed() {
			passed.Add(1)
		}
	})

	t.Run("release channel without network", func(t *testing.T) {
		t.Parallel()
		root, flags := setup(t)
		const retries = 3
		// Nothing listens on port 9 of loopback: connection refused.
		r := runBin(t, ccbootBin, nil, append([]string{"run", "--set", "claude-code.retries=" + strconv.Itoa(retries), "--set", "claude-code.release_url=http://127.0.0.1:9/claude-code-releases"}, flags...)...)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
		// Waits of 2s and 4s between the three attempts.
		if r.took < 6*time.Second || r.took > 25*time.Second {
			t.Errorf("took %s: want the retries' backoff, bounded", r.took)
		}
		line := stepLine(r.stdout, "claude-code")
		for _, w := range []string{" failed ", "attempt 3 of 3", "connection refused", "127.0.0.1:9", "[claude-code] retries"} {
			if !strings.Contains(line, w) {
				t.Errorf("claude-code error lacks %q:\n%s", w, line)
			}
		}
		if _, err := os.Lstat(filepath.Join(root, "usr/local/bin/claude")); !errors.Is(err, fs.ErrNotExist) {
			t.Error("a failed install left PREFIX/bin/claude behind")
		}
		if !t.Failed() {
			passed.Add(1)
		}
	})
}
