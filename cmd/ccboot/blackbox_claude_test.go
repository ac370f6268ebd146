package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
	"github.com/ccboot/ccboot/steps/claudetest"
)

// TestBlackboxClaudeCodeNative: the built binary installs Claude Code from
// a loopback release channel and npm registry, byte for byte; a second run
// changes nothing; a corrupted version fails and leaves the previous one
// working; the npm layout of older ccboot versions is migrated.
func TestBlackboxClaudeCodeNative(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	for _, p := range []string{"usr/local/lib/claude-code", "usr/local/bin/claude"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	// The npm layout an older ccboot left.
	npmCopy := filepath.Join(root, "usr/local/lib/node_modules/@anthropic-ai/claude-code")
	if err := os.MkdirAll(filepath.Join(npmCopy, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(npmCopy, "bin/claude.exe"), []byte("#!/bin/sh\necho old\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe", filepath.Join(root, "usr/local/bin/claude")); err != nil {
		t.Fatal(err)
	}
	imds := aemmtest.Start(t, aemmtest.Default())
	srv := claudetest.New()
	t.Cleanup(srv.Close)
	exe := func(v string) []byte { return claudetest.Executable(v, 3<<20) }
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
		srv.Add(v, "linux-x64", exe(v))
	}
	srv.Corrupt("1.0.1", "linux-x64", claudetest.Executable("tampered", 3<<20))
	trustKey, err := srv.WriteKey(root)
	if err != nil {
		t.Fatal(err)
	}
	run := func(mode, source, version string, extra ...string) result {
		args := []string{mode, "--root", root, "--only", "claude-code", "--imds-endpoint", imds,
			"--set", "claude-code.source=" + source, "--set", "claude-code.version=" + version,
			"--set", "claude-code.release_url=" + srv.ReleaseURL(), "--set", "claude-code.registry=" + srv.RegistryURL(), "--set", trustKey}
		return ccboot(t, append(args, extra...)...)
	}
	linked := func() []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, "usr/local/bin/claude"))
		if err != nil {
			t.Fatalf("PREFIX/bin/claude: %v", err)
		}
		return b
	}

	r := run("run", "release", "1.0.0")
	if r.code != 0 || !strings.Contains(r.stdout, "claude-code   changed") {
		t.Fatalf("first run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if string(linked()) != string(exe("1.0.0")) {
		t.Fatal("PREFIX/bin/claude does not resolve to the served executable byte for byte")
	}
	if _, err := os.Lstat(npmCopy); !os.IsNotExist(err) {
		t.Errorf("the npm copy is still there: %v", err)
	}
	exePath := filepath.Join(root, "usr/local/lib/claude-code/versions/1.0.0/claude")
	fi, _ := os.Stat(exePath)
	requests := srv.Requests(claudetest.ExePath("1.0.0", "linux-x64"))

	r = run("repair", "release", "1.0.0")
	if r.code != 0 || !strings.Contains(r.stdout, "claude-code   ok") {
		t.Fatalf("second run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fi2, _ := os.Stat(exePath)
	if fi2.Sys().(*syscall.Stat_t).Ino != fi.Sys().(*syscall.Stat_t).Ino || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("a no-op repair replaced the executable")
	}
	if got := srv.Requests(claudetest.ExePath("1.0.0", "linux-x64")); got != requests {
		t.Errorf("a no-op repair downloaded again (%d -> %d requests)", requests, got)
	}
	if r := run("repair", "release", "1.0.0", "--verify"); r.code != 0 || !strings.Contains(r.stdout, "claude-code   ok") {
		t.Fatalf("repair --verify of an intact install: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = run("repair", "release", "1.0.1")
	if r.code != 1 {
		t.Fatalf("corrupted version: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range []string{"checksum mismatch", claudetest.SHA256(exe("1.0.1")), claudetest.ExePath("1.0.1", "linux-x64")} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("failure lacks %q:\n%s", w, r.stdout)
		}
	}
	if string(linked()) != string(exe("1.0.0")) {
		t.Fatal("after a failed upgrade PREFIX/bin/claude no longer resolves to the previous executable")
	}

	r = run("repair", "npm", "1.0.2")
	if r.code != 0 {
		t.Fatalf("npm source: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if string(linked()) != string(exe("1.0.2")) {
		t.Fatal("the npm source did not install the package's executable byte for byte")
	}
	st := ccboot(t, "status", "--root", root, "--imds-endpoint", imds, "--set", "claude-code.source=npm", "--set", "claude-code.version=1.0.2")
	for _, w := range []string{"1.0.2", "source npm", claudetest.SHA256(exe("1.0.2")), "versions/1.0.2/claude"} {
		if !strings.Contains(st.stdout, w) {
			t.Errorf("status lacks %q:\n%s", w, st.stdout)
		}
	}
}
