//go:build reliability

package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// TestReliabilityHostileHome plants each hostile thing the issue lists in
// the user's home of an already converged root and runs `ccboot repair`.
// ccboot must refuse with a clear one-line error and change nothing at all:
// every path in the root (inside and outside the home, the link targets
// included) hashes the same before and after.
func TestReliabilityHostileHome(t *testing.T) {
	t.Parallel()
	imds := aemmtest.Start(t, aemmtest.Default())
	const home = "home/ec2-user"
	cases := []struct {
		name  string
		plant func(t *testing.T, root string)
		step  string   // the step that must refuse
		want  []string // the refusal names cause and fix
	}{
		{"~/.aws symlinked to a root-owned directory outside home", func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "opt/secret/config"), "[default]\nregion = root-only\n", 0o600)
			os.Chmod(filepath.Join(root, "opt/secret"), 0o700)
			replaceWithLink(t, filepath.Join(root, home, ".aws"), "../../opt/secret")
		}, "aws-config", []string{".aws", "symbolic link", "remove the link"}},
		{"~/.aws/config symlinked to the root's /etc/shadow", func(t *testing.T, root string) {
			replaceWithLink(t, filepath.Join(root, home, ".aws/config"), "../../../etc/shadow")
		}, "aws-config", []string{".aws/config", "symbolic link", "../../../etc/shadow", "remove the link"}},
		{"~/.bashrc symlinked out of home", func(t *testing.T, root string) {
			mustWrite(t, filepath.Join(root, "etc/bash.bashrc"), "# system-wide bashrc\n", 0o644)
			replaceWithLink(t, filepath.Join(root, home, ".bashrc"), "../../etc/bash.bashrc")
		}, "aliases", []string{".bashrc", "symbolic link", "remove the link"}},
		{"~/.aws owned by another user", func(t *testing.T, root string) {
			if err := os.Lchown(filepath.Join(root, home, ".aws"), 2000, 2000); err != nil {
				t.Fatal(err)
			}
		}, "aws-config", []string{".aws", "owned by uid 2000", "move it away"}},
		{"a FIFO where ~/.bashrc should be", func(t *testing.T, root string) {
			p := filepath.Join(root, home, ".bashrc")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "aliases", []string{".bashrc", "FIFO", "move it away"}},
		// Finding 2: `sudo aws configure` left a root-owned ~/.aws with
		// root's credentials; ccboot must not hand it to the user.
		{"root-owned ~/.aws from sudo aws configure", func(t *testing.T, root string) {
			dir := filepath.Join(root, home, ".aws")
			mustWrite(t, filepath.Join(dir, "credentials"), "[default]\naws_secret_access_key = "+homeSecret+"\n", 0o600)
			mustChown(t, 0, dir, filepath.Join(dir, "config"), filepath.Join(dir, "credentials"))
		}, "aws-config", []string{".aws:", "owned by uid 0", "chown", "move it away"}},
		{"root's credentials renamed onto ~/.aws/config", func(t *testing.T, root string) {
			dir := filepath.Join(root, home, ".aws")
			mustWrite(t, filepath.Join(dir, "credentials"), "[default]\naws_secret_access_key = "+homeSecret+"\n", 0o600)
			mustChown(t, 0, filepath.Join(dir, "credentials"))
			if err := os.Rename(filepath.Join(dir, "credentials"), filepath.Join(dir, "config")); err != nil {
				t.Fatal(err)
			}
		}, "aws-config", []string{".aws/config:", "owned by uid 0", "chown", "move it away"}},
		// Finding 3: a sparse 3 GiB ~/.bashrc (4 KB on disk) and a 20 MB
		// line must not be read, rewritten or copied into state and log.
		{"sparse 3 GiB ~/.bashrc", func(t *testing.T, root string) {
			if err := os.Truncate(filepath.Join(root, home, ".bashrc"), 3<<30); err != nil {
				t.Fatal(err)
			}
		}, "aliases", []string{".bashrc", "too large", "move it away"}},
		{"20 MB line in ~/.aws/config", func(t *testing.T, root string) {
			p := filepath.Join(root, home, ".aws/config")
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("[profile big]\nx = " + strings.Repeat("A", 20<<20) + "\n"); err != nil {
				t.Fatal(err)
			}
		}, "aws-config", []string{".aws/config", "too large", "move it away"}},
		// Finding 5: a malformed secret line is named by line, not quoted.
		{"malformed secret line in ~/.aws/config", func(t *testing.T, root string) {
			p := filepath.Join(root, home, ".aws/config")
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString("aws_secret_access_key " + homeSecret + "\n"); err != nil {
				t.Fatal(err)
			}
		}, "aws-config", []string{".aws/config", "line ", "fix or move it away"}},
	}
	var passed atomic.Int32
	t.Cleanup(func() { figure(t, "hostile-home", int(passed.Load()), len(cases)) })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := newRoot(t)
			flags := []string{"--root", root, "--imds-endpoint", imds}
			if r := runBin(t, ccbootBin, nil, append([]string{"run"}, flags...)...); r.code != 0 {
				t.Fatalf("first run: %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			tc.plant(t, root)
			before := snapshot(t, root)
			r := runBin(t, ccbootBin, nil, append([]string{"repair"}, flags...)...)
			if r.took > 30*time.Second {
				t.Errorf("repair took %s (a FIFO read must not block)", r.took)
			}
			if r.code != 1 {
				t.Fatalf("repair exit %d, want 1 (refused)\n%s%s", r.code, r.stdout, r.stderr)
			}
			line := stepLine(r.stdout, tc.step)
			if !strings.Contains(line, " failed ") {
				t.Fatalf("%s did not fail:\n%s", tc.step, r.stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("%s error lacks %q:\n%s", tc.step, w, line)
				}
			}
			if d := diffTrees(before, snapshot(t, root)); len(d) > 0 {
				t.Errorf("refused, but the tree changed:\n%s", strings.Join(d, "\n"))
			}
			// Nothing the user planted is copied into ccboot's own files
			// or output, and they stay small.
			if strings.Contains(r.stdout+r.stderr, homeSecret) {
				t.Errorf("the planted secret is in ccboot's output")
			}
			for _, f := range []string{"var/lib/ccboot/state.json", "var/log/ccboot.log"} {
				b, err := os.ReadFile(filepath.Join(root, f))
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(b), homeSecret) {
					t.Errorf("the planted secret is in %s", f)
				}
				if len(b) > 256<<10 {
					t.Errorf("%s is %d bytes after two runs", f, len(b))
				}
			}
			if !t.Failed() {
				passed.Add(1)
			}
		})
	}
}

// homeSecret is planted in the hostile home; it must never be quoted.
const homeSecret = "wJalrXUtnFEMIK7MDENGbPxRfiCYHOSTILE"

func mustChown(t *testing.T, uid int, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}

func replaceWithLink(t *testing.T, p, target string) {
	t.Helper()
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}
