package steps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/steps/claudetest"
)

// newClaudeEnv is a test root (x64 glibc /bin/sh) whose config points at a
// loopback release channel and npm registry holding 1.0.0 and 1.0.1.
func newClaudeEnv(t *testing.T, source string) (*bootstrap.Env, *claudetest.Server, func(v string) []byte) {
	t.Helper()
	env, _ := newTestEnv(t)
	writeTestFile(t, env.Root, "usr/bin/dash", string(claudetest.ELFHeader("x64")), 0o755)
	if err := os.Symlink("usr/bin", filepath.Join(env.Root, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dash", filepath.Join(env.Root, "usr/bin/sh")); err != nil {
		t.Fatal(err)
	}
	srv := claudetest.New()
	t.Cleanup(srv.Close)
	exe := func(v string) []byte { return claudetest.Executable(v, 700<<10) }
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2", "2.1.88", "2.1.332"} {
		srv.Add(v, "linux-x64", exe(v))
	}
	if _, err := srv.WriteKey(env.Root); err != nil {
		t.Fatal(err)
	}
	c := env.Config
	c.ClaudeSource, c.ClaudeVersion = source, "1.0.0"
	c.ClaudeSigningKey = claudetest.KeyPath
	c.ClaudeReleaseURL, c.ClaudeRegistry = srv.ReleaseURL(), srv.RegistryURL()
	c.ClaudeStall = 2 * time.Second
	return env, srv, exe
}

func noWait() ClaudeCode {
	return ClaudeCode{sleep: func(context.Context, time.Duration) error { return nil }}
}

func readLinked(t *testing.T, env *bootstrap.Env) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.Root, "usr/local/bin/claude"))
	if err != nil {
		t.Fatalf("read through PREFIX/bin/claude: %v", err)
	}
	return data
}

func mustCheck(t *testing.T, env *bootstrap.Env) bootstrap.Drift {
	t.Helper()
	d, err := noWait().Check(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestClaudeCodeInstallsVerifiedAndIdempotent(t *testing.T) {
	t.Parallel()
	for _, source := range []string{"release", "npm"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			env, _, exe := newClaudeEnv(t, source)
			d := mustCheck(t, env)
			if want := []string{"install Claude Code 1.0.0 from " + source + " (not installed)"}; !reflect.DeepEqual(d.Changes, want) {
				t.Fatalf("Changes = %q, want %q", d.Changes, want)
			}
			if err := noWait().Apply(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if got := readLinked(t, env); string(got) != string(exe("1.0.0")) {
				t.Fatalf("installed %d bytes, not the served executable", len(got))
			}
			target, _ := os.Readlink(filepath.Join(env.Root, "usr/local/bin/claude"))
			if target != "../lib/claude-code/versions/1.0.0/claude" {
				t.Errorf("link = %q", target)
			}
			fi, err := os.Stat(filepath.Join(env.Root, "usr/local/lib/claude-code/versions/1.0.0/claude"))
			if err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("executable: %v, %v; want mode 0755", fi, err)
			}
			d = mustCheck(t, env)
			if !d.InSync() || len(d.Notes) == 0 || !strings.Contains(d.Notes[0], claudetest.SHA256(exe("1.0.0"))) || !strings.Contains(d.Notes[0], "source "+source) {
				t.Errorf("after install: %+v, want in sync with a note naming the source and checksum", d)
			}
			if entries, _ := os.ReadDir(filepath.Join(env.Root, "usr/local/lib/claude-code/versions/1.0.0")); len(entries) != 2 {
				t.Errorf("version dir holds %v, want the executable and its record only (no temp file)", entries)
			}
			if len(env.Run.(interface{ Calls() []string }).Calls()) != 0 {
				t.Errorf("ran %q; no process in root mode", env.Run.(interface{ Calls() []string }).Calls())
			}
		})
	}
}

func TestClaudeCodeCheckDetectsChanges(t *testing.T) {
	t.Parallel()
	env, _, _ := newClaudeEnv(t, "release")
	if err := noWait().Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(env.Root, "usr/local/lib/claude-code/versions/1.0.0/claude")
	fi, _ := os.Stat(exe)
	// Same size and mtime, other content: only --verify notices.
	data, _ := os.ReadFile(exe)
	data[len(data)-1] = 'X'
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(exe, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if d := mustCheck(t, env); !d.InSync() {
		t.Errorf("plain Check re-hashed: %q", d.Changes)
	}
	env.Verify = true
	d := mustCheck(t, env)
	if len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "reinstall Claude Code 1.0.0") || !strings.Contains(d.Changes[0], "sha256") {
		t.Errorf("verify Changes = %q, want a reinstall naming the checksums", d.Changes)
	}
	if err := noWait().Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if d := mustCheck(t, env); !d.InSync() {
		t.Errorf("after repair --verify: %q", d.Changes)
	}
	env.Verify = false
	// A changed size is noticed without re-hashing.
	if err := os.WriteFile(exe, []byte("short"), 0o755); err != nil {
		t.Fatal(err)
	}
	if d := mustCheck(t, env); len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "changed since it was installed") {
		t.Errorf("Changes = %q", d.Changes)
	}
}

func TestClaudeCodeUpgradeKeepsPreviousRemovesOlder(t *testing.T) {
	t.Parallel()
	env, _, exe := newClaudeEnv(t, "release")
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2"} {
		env.Config.ClaudeVersion = v
		d := mustCheck(t, env)
		if v != "1.0.0" && (len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "(installed: ")) {
			t.Errorf("%s: Changes = %q", v, d.Changes)
		}
		if err := noWait().Apply(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		if got := readLinked(t, env); string(got) != string(exe(v)) {
			t.Fatalf("%s: link resolves to other bytes", v)
		}
	}
	names, _ := os.ReadDir(filepath.Join(env.Root, "usr/local/lib/claude-code/versions"))
	var got []string
	for _, n := range names {
		got = append(got, n.Name())
	}
	if want := []string{"1.0.1", "1.0.2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("versions = %q, want %q (active and previous)", got, want)
	}
	// Rolling back to the kept version downloads nothing.
	env.Config.ClaudeVersion = "1.0.1"
	env.Config.ClaudeReleaseURL = "http://127.0.0.1:1/nothing-here"
	if err := noWait().Apply(context.Background(), env); err != nil {
		t.Fatalf("rollback to the kept version: %v", err)
	}
	if got := readLinked(t, env); string(got) != string(exe("1.0.1")) {
		t.Error("rollback did not switch the link")
	}
}

func TestClaudeCodeFaults(t *testing.T) {
	t.Parallel()
	x64 := "linux-x64"
	tests := []struct {
		name    string
		source  string
		version string
		setup   func(s *claudetest.Server)
		wantErr []string // nil succeeds; KEY and OTHER stand for the trusted and the other key's fingerprints
		// requests to the executable or tarball path, when checked
		wantReq int
	}{
		{name: "checksum mismatch", source: "release", version: "1.0.1",
			setup:   func(s *claudetest.Server) { s.Corrupt("1.0.1", x64, claudetest.Executable("evil", 700<<10)) },
			wantErr: []string{"checksum mismatch", claudetest.SHA256(claudetest.Executable("evil", 700<<10)), claudetest.SHA256(claudetest.Executable("1.0.1", 700<<10)), claudetest.ExePath("1.0.1", x64)}, wantReq: 1},
		{name: "size mismatch", source: "release", version: "1.0.1",
			setup:   func(s *claudetest.Server) { s.Corrupt("1.0.1", x64, []byte("short")) },
			wantErr: []string{"got 5 bytes"}, wantReq: 1},
		{name: "truncated then ok", source: "release", version: "1.0.1",
			setup: func(s *claudetest.Server) { s.Fail(claudetest.ExePath("1.0.1", x64), claudetest.Truncate) }, wantReq: 2},
		{name: "500 then ok", source: "release", version: "1.0.1",
			setup: func(s *claudetest.Server) { s.Fail(claudetest.ExePath("1.0.1", x64), claudetest.Status500) }, wantReq: 2},
		{name: "500 every time", source: "release", version: "1.0.1",
			setup: func(s *claudetest.Server) {
				s.Fail(claudetest.ExePath("1.0.1", x64), claudetest.Status500, claudetest.Status500, claudetest.Status500)
			}, wantErr: []string{"500", "attempt 3 of 3", "[claude-code] retries"}, wantReq: 3},
		{name: "stall then ok", source: "release", version: "1.0.1",
			setup: func(s *claudetest.Server) { s.Fail(claudetest.ExePath("1.0.1", x64), claudetest.Stall) }, wantReq: 2},
		{name: "unknown version", source: "release", version: "9.9.9",
			wantErr: []string{"version 9.9.9 is unknown", "[claude-code] version"}},
		{name: "manifest without this platform", source: "release", version: "1.0.1",
			setup:   func(s *claudetest.Server) { s.HidePlatform("1.0.1", x64) },
			wantErr: []string{"no build for linux-x64"}, wantReq: 0},
		{name: "unsigned manifest", source: "release", version: "2.1.332",
			setup:   func(s *claudetest.Server) { s.Unsign("2.1.332") },
			wantErr: []string{claudetest.SigPath("2.1.332") + " is missing (404)", "expected a signature by key KEY, signer none", "verify_signature = false"}},
		{name: "signature by another key", source: "release", version: "2.1.332",
			setup:   func(s *claudetest.Server) { s.SignWithOtherKey("2.1.332") },
			wantErr: []string{claudetest.SigPath("2.1.332"), "by another key", "expected key KEY, signer OTHER"}},
		{name: "manifest changed after signing", source: "release", version: "2.1.332",
			setup:   func(s *claudetest.Server) { s.Forge("2.1.332", x64, claudetest.Executable("evil", 700<<10)) },
			wantErr: []string{claudetest.SigPath("2.1.332"), "does not verify", "expected key KEY, signer KEY"}},
		{name: "signature over another version's manifest", source: "release", version: "2.1.332",
			setup:   func(s *claudetest.Server) { s.ReplaySignature("2.1.332", "1.0.1") },
			wantErr: []string{claudetest.SigPath("2.1.332"), "does not verify", "expected key KEY"}},
		{name: "an unsigned release before 2.1.89, pinned", source: "release", version: "2.1.88",
			setup: func(s *claudetest.Server) { s.Unsign("2.1.88") }, wantReq: 1},
		{name: "npm integrity mismatch", source: "npm", version: "1.0.1",
			setup:   func(s *claudetest.Server) { s.Corrupt("1.0.1", x64, claudetest.Executable("evil", 700<<10)) },
			wantErr: []string{"checksum mismatch", "dist.integrity", claudetest.TarballPath("1.0.1", x64)}, wantReq: 1},
		{name: "npm truncated then ok", source: "npm", version: "1.0.1",
			setup: func(s *claudetest.Server) { s.Fail(claudetest.TarballPath("1.0.1", x64), claudetest.Truncate) }, wantReq: 2},
		{name: "npm unknown version", source: "npm", version: "9.9.9",
			wantErr: []string{"version 9.9.9", "unknown to the registry", "[claude-code] version"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, srv, exe := newClaudeEnv(t, tt.source)
			if strings.HasPrefix(tt.name, "stall") {
				env.Config.ClaudeStall = 300 * time.Millisecond
			}
			if err := noWait().Apply(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(srv)
			}
			env.Config.ClaudeVersion = tt.version
			err := noWait().Apply(context.Background(), env)
			path := claudetest.ExePath(tt.version, x64)
			if tt.source == "npm" {
				path = claudetest.TarballPath(tt.version, x64)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if got := readLinked(t, env); string(got) != string(exe(tt.version)) {
					t.Error("installed bytes differ from the published ones")
				}
			} else {
				if err == nil {
					t.Fatal("Apply succeeded")
				}
				for _, w := range tt.wantErr {
					w = strings.NewReplacer("KEY", srv.Signer().Fingerprint(), "OTHER", srv.OtherSigner().Fingerprint()).Replace(w)
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if got := readLinked(t, env); string(got) != string(exe("1.0.0")) {
					t.Error("the previous version no longer runs")
				}
				leftovers, _ := filepath.Glob(filepath.Join(env.Root, "usr/local/lib/claude-code/versions/*/.*"))
				if len(leftovers) != 0 {
					t.Errorf("temp files left: %q", leftovers)
				}
				if _, err := os.Lstat(filepath.Join(env.Root, "usr/local/lib/claude-code/versions", tt.version)); !os.IsNotExist(err) {
					t.Errorf("the failed version's directory is left: %v", err)
				}
			}
			if tt.version != "9.9.9" {
				if got := srv.Requests(path); got != tt.wantReq {
					t.Errorf("requests to %s = %d, want %d", path, got, tt.wantReq)
				}
			}
		})
	}
}

func TestClaudeCodeRetryBackoff(t *testing.T) {
	t.Parallel()
	env, srv, _ := newClaudeEnv(t, "release")
	srv.Fail("/release/1.0.0/manifest.json", claudetest.Status500, claudetest.Status500)
	var mu sync.Mutex
	var waits []time.Duration
	step := ClaudeCode{sleep: func(_ context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return nil
	}}
	if err := step.Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if want := []time.Duration{2 * time.Second, 4 * time.Second}; !reflect.DeepEqual(waits, want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}
}

func TestClaudeCodeChannel(t *testing.T) {
	t.Parallel()
	for _, source := range []string{"release", "npm"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			env, srv, exe := newClaudeEnv(t, source)
			srv.SetChannel("stable", "1.0.1")
			env.Config.ClaudeVersion = "stable"
			if err := noWait().Apply(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if string(readLinked(t, env)) != string(exe("1.0.1")) {
				t.Error("stable did not resolve to 1.0.1")
			}
			srv.SetChannel("stable", "1.0.2")
			if d := mustCheck(t, env); len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "1.0.2 from "+source+" (installed: 1.0.1)") {
				t.Errorf("after the channel moved: %q", d.Changes)
			}
		})
	}
}

// TestClaudeCodeMigratesNpmLayout: an instance bootstrapped with npm
// converges to the native layout and the npm copy goes.
func TestClaudeCodeMigratesNpmLayout(t *testing.T) {
	t.Parallel()
	env, _, exe := newClaudeEnv(t, "release")
	pkg := "usr/local/lib/node_modules/@anthropic-ai/claude-code"
	writeTestFile(t, env.Root, pkg+"/package.json", `{"name":"@anthropic-ai/claude-code","version":"2.1.300"}`, 0o644)
	writeTestFile(t, env.Root, pkg+"/bin/claude.exe", "old", 0o755)
	if err := os.MkdirAll(filepath.Join(env.Root, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe", filepath.Join(env.Root, "usr/local/bin/claude")); err != nil {
		t.Fatal(err)
	}
	// A link inside the npm copy pointing out of the prefix must be
	// removed, not followed.
	outside := filepath.Join(env.Root, "etc/keep")
	writeTestFile(t, env.Root, "etc/keep", "keep", 0o644)
	if err := os.Symlink("/etc", filepath.Join(env.Root, pkg, "escape")); err != nil {
		t.Fatal(err)
	}
	d := mustCheck(t, env)
	if len(d.Changes) != 2 || !strings.Contains(d.Changes[0], "points to ../lib/node_modules") || !strings.Contains(d.Changes[1], "remove the npm copy") {
		t.Fatalf("Changes = %q", d.Changes)
	}
	if err := noWait().Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if string(readLinked(t, env)) != string(exe("1.0.0")) {
		t.Error("bin/claude is not the native executable")
	}
	if _, err := os.Lstat(filepath.Join(env.Root, pkg)); !os.IsNotExist(err) {
		t.Errorf("npm copy still there: %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("a file outside the prefix went: %v", err)
	}
	if d := mustCheck(t, env); !d.InSync() {
		t.Errorf("after migration: %q", d.Changes)
	}
}

func TestClaudePlatform(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arch, loader, want string
	}{
		{"x64", "", "linux-x64"},
		{"arm64", "", "linux-arm64"},
		{"x64", "lib/ld-musl-x86_64.so.1", "linux-x64-musl"},
		{"arm64", "lib/ld-musl-aarch64.so.1", "linux-arm64-musl"},
	}
	for _, tt := range tests {
		env, _ := newTestEnv(t)
		writeTestFile(t, env.Root, "bin/sh", string(claudetest.ELFHeader(tt.arch)), 0o755)
		if tt.loader != "" {
			writeTestFile(t, env.Root, tt.loader, "", 0o755)
		}
		got, err := claudePlatform(env)
		if err != nil || got != tt.want {
			t.Errorf("%s %s: platform = %q, %v; want %q", tt.arch, tt.loader, got, err, tt.want)
		}
	}
	env, _ := newTestEnv(t)
	writeTestFile(t, env.Root, "bin/sh", "#!/bin/busybox\n", 0o755)
	if _, err := claudePlatform(env); err == nil || !strings.Contains(err.Error(), "cannot tell the architecture") {
		t.Errorf("no ELF /bin/sh: err = %v", err)
	}
}

func TestClaudeCodeLiveVerifiesAsUser(t *testing.T) {
	t.Parallel()
	env, _, _ := newClaudeEnv(t, "release")
	fake := env.Run.(interface {
		OnOutput(string, string)
		OnExit(string, int, string)
		Calls() []string
	})
	// Live mode without touching the host: the runner is fake and all file
	// access goes through env.Sys, which stays the temp tree.
	env.Root = "/"
	fake.OnOutput("runuser -u ec2-user -- /usr/local/bin/claude --version", "1.0.0 (Claude Code)\n")
	if err := noWait().Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if calls := fake.Calls(); !reflect.DeepEqual(calls, []string{"runuser -u ec2-user -- /usr/local/bin/claude --version"}) {
		t.Errorf("calls = %q, want only the verification as the user (no node, no npm)", calls)
	}
}

// hostileTarball is a platform package whose package/claude is exe,
// followed by an entry of extra zero bytes.
func hostileTarball(exe []byte, extra int) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	_ = tw.WriteHeader(&tar.Header{Name: "package/claude", Mode: 0o755, Size: int64(len(exe)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(exe)
	_ = tw.WriteHeader(&tar.Header{Name: "package/padding", Mode: 0o644, Size: int64(extra), Typeflag: tar.TypeReg})
	_, _ = tw.Write(make([]byte, extra))
	_ = tw.Close()
	_ = gz.Close()
	return buf.Bytes()
}

// TestClaudeCodeHostileSource: a source that lies about sizes, sends
// sparse or endless data, or points root's downloader at plain http is
// refused with one line naming the cause, before the disk fills, on the
// first attempt, and the installed version stays.
func TestClaudeCodeHostileSource(t *testing.T) {
	t.Parallel()
	x64 := "linux-x64"
	tests := []struct {
		name     string
		source   string
		maxBytes int64
		setup    func(s *claudetest.Server)
		wantErr  []string
		maxSent  int64 // body bytes the server may have sent for the download
	}{
		{name: "npm sparse package/claude", source: "npm",
			setup:   func(s *claudetest.Server) { s.Publish("1.0.1", x64, claudetest.SparseTarball(100<<30)) },
			wantErr: []string{"sparse entry", `"package/claude"`, "[claude-code] registry"}, maxSent: 4 << 10},
		{name: "npm entry larger than the cap", source: "npm",
			setup:   func(s *claudetest.Server) { s.Publish("1.0.1", x64, claudetest.OversizedTarball(3<<30)) },
			wantErr: []string{"declares 3221225472 bytes", "cap of 2 GiB"}, maxSent: 4 << 10},
		{name: "npm tarball decompresses past the cap", source: "npm", maxBytes: 1 << 20,
			setup: func(s *claudetest.Server) {
				s.Publish("1.0.1", x64, hostileTarball(claudetest.Executable("1.0.1", 700<<10), 4<<20))
			},
			wantErr: []string{"decompresses to more than", "cap of 1 MiB"}, maxSent: 1 << 20},
		{name: "release body longer than the manifest", source: "release",
			setup:   func(s *claudetest.Server) { s.Fail(claudetest.ExePath("1.0.1", x64), claudetest.Endless) },
			wantErr: []string{"sends more than the 716800 bytes declared"}, maxSent: 32 << 20},
		{name: "release manifest size past the cap", source: "release", maxBytes: 512 << 10,
			wantErr: []string{"declares 716800 bytes", "cap of 524288 bytes"}, maxSent: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, srv, exe := newClaudeEnv(t, tt.source)
			c := noWait()
			if err := c.Apply(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(srv)
			}
			c.maxBytes = tt.maxBytes
			env.Config.ClaudeVersion = "1.0.1"
			err := c.Apply(context.Background(), env)
			if err == nil {
				t.Fatal("Apply succeeded")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			p := claudetest.ExePath("1.0.1", x64)
			if tt.source == "npm" {
				p = claudetest.TarballPath("1.0.1", x64)
			}
			if got := srv.Requests(p); got > 1 {
				t.Errorf("retried: %d requests to %s", got, p)
			}
			if got := srv.Sent(p); got > tt.maxSent {
				t.Errorf("the server sent %d bytes for %s, more than %d: the download was not cut short", got, p, tt.maxSent)
			}
			if got := readLinked(t, env); string(got) != string(exe("1.0.0")) {
				t.Error("the previous version no longer runs")
			}
			if _, err := os.Lstat(filepath.Join(env.Root, "usr/local/lib/claude-code/versions/1.0.1")); !os.IsNotExist(err) {
				t.Errorf("the refused version's directory (or a temp file in it) is left: %v", err)
			}
		})
	}
}

// trustingSource is the claude-code source of env with srv's certificate
// trusted (the binary's tests use SSL_CERT_FILE instead).
func trustingSource(t *testing.T, env *bootstrap.Env, srv *claudetest.Server) claudeSource {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CertPEM()) {
		t.Fatal("no certificate")
	}
	src := newClaudeSource(env, func(context.Context, time.Duration) error { return nil }, 0)
	src.client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	return src
}

// TestClaudeCodeNoPlainHTTPFromHTTPS: from an https release channel or
// registry, neither a redirect nor dist.tarball may lead to plain http on
// loopback (a Docker API, an admin port); nothing is requested there.
// From a plain-http loopback source (tests, a local mirror) both still work.
func TestClaudeCodeNoPlainHTTPFromHTTPS(t *testing.T) {
	t.Parallel()
	var local atomic.Int32
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { local.Add(1) }))
	t.Cleanup(service.Close)
	x64 := "linux-x64"
	for _, tt := range []struct {
		name, source string
		setup        func(s *claudetest.Server)
		wantErr      []string
	}{
		{"release redirect to loopback http", "release",
			func(s *claudetest.Server) {
				s.Redirect(claudetest.ExePath("1.0.1", x64), service.URL+"/containers/json")
			},
			[]string{"refusing a redirect from https://127.0.0.1:", "to " + service.URL + "/containers/json", "not https"}},
		{"npm dist.tarball on loopback http", "npm",
			func(s *claudetest.Server) { s.SetTarballURL("1.0.1", x64, service.URL+"/admin") },
			[]string{"dist.tarball", service.URL + "/admin", "not an https URL"}},
		{"npm redirect to loopback http", "npm",
			func(s *claudetest.Server) { s.Redirect(claudetest.TarballPath("1.0.1", x64), service.URL+"/admin") },
			[]string{"refusing a redirect", service.URL + "/admin"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, _, _ := newClaudeEnv(t, tt.source)
			srv := claudetest.NewTLS()
			t.Cleanup(srv.Close)
			srv.Add("1.0.1", x64, claudetest.Executable("1.0.1", 64<<10))
			env.Config.ClaudeReleaseURL, env.Config.ClaudeRegistry = srv.ReleaseURL(), srv.RegistryURL()
			tt.setup(srv)
			l := claudeLayout{env.Config.ClaudePrefix}
			if _, err := env.Sys.EnsureDir(l.dir("1.0.1"), fsroot.FileSpec{Mode: 0o755, UID: fsroot.KeepOwner, GID: fsroot.KeepOwner}); err != nil {
				t.Fatal(err)
			}
			_, err := trustingSource(t, env, srv).fetch(context.Background(), "1.0.1", x64, l.exe("1.0.1"))
			if err == nil {
				t.Fatal("fetch succeeded")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var p permanent
			if !errors.As(err, &p) && !strings.Contains(err.Error(), "dist.tarball") {
				t.Errorf("a refused redirect is retried: %v", err)
			}
			if n := local.Load(); n != 0 {
				t.Errorf("the loopback service got %d requests", n)
			}
		})
	}

	// A plain-http loopback source may still redirect to loopback http.
	env, srv, exe := newClaudeEnv(t, "release")
	mirror := claudetest.New()
	t.Cleanup(mirror.Close)
	mirror.Add("1.0.0", x64, exe("1.0.0"))
	srv.Redirect(claudetest.ExePath("1.0.0", x64), mirror.ReleaseURL()+"/1.0.0/"+x64+"/claude")
	if err := noWait().Apply(context.Background(), env); err != nil {
		t.Fatalf("redirect between loopback http servers: %v", err)
	}
}

// TestClaudeCodeNpmLayoutLinkedParent: when PREFIX/lib/node_modules is a
// symbolic link (here to a directory of the user's), removing the npm
// layout is refused with a line naming the link, and the link's target
// keeps its files.
func TestClaudeCodeNpmLayoutLinkedParent(t *testing.T) {
	t.Parallel()
	env, _, _ := newClaudeEnv(t, "release")
	mine := "home/ec2-user/mine"
	writeTestFile(t, env.Root, mine+"/@anthropic-ai/claude-code/package.json", `{"name":"@anthropic-ai/claude-code"}`, 0o644)
	if err := os.MkdirAll(filepath.Join(env.Root, "usr/local/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../"+mine, filepath.Join(env.Root, "usr/local/lib/node_modules")); err != nil {
		t.Fatal(err)
	}
	err := noWait().Apply(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "remove the npm copy") || !strings.Contains(err.Error(), "usr/local/lib/node_modules") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Apply = %v, want one line refusing the linked usr/local/lib/node_modules", err)
	}
	if _, err := os.Stat(filepath.Join(env.Root, mine, "@anthropic-ai/claude-code/package.json")); err != nil {
		t.Errorf("the user's directory behind the link lost its files: %v", err)
	}
}

// TestVerifyClaudeHasNoTerminal: `claude --version` (through the real
// runuser, as nobody) gets no controlling terminal even when ccboot has one
// (an admin's `sudo ccboot repair`): opening /dev/tty fails with ENXIO and
// it runs in a session of its own, so it cannot TIOCSTI keystrokes into
// root's terminal. The test runs itself on a pty it creates, as the
// session leader with that pty as its controlling terminal.
func TestVerifyClaudeHasNoTerminal(t *testing.T) {
	if dir := os.Getenv("CCBOOT_TEST_TTY_DIR"); dir != "" {
		verifyClaudeOnTerminal(t, dir)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("runuser needs root")
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		t.Skip("runuser(1) not installed")
	}
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no user nobody")
	}
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil { // nobody must reach bin/claude
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\n" +
		"err=$( (exec 3</dev/tty) 2>&1 ) && tty=yes || tty=no\n" +
		"echo \"$tty $(cut -d' ' -f6 /proc/$$/stat) $err\" > " + out + "/claude\n" +
		"echo '1.0.0 (Claude Code)'\n"
	writeTestFile(t, dir, "bin/claude", script, 0o755)

	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestVerifyClaudeHasNoTerminal$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "CCBOOT_TEST_TTY_DIR="+dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	var console bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&console, ptmx); close(done) }()
	runErr := cmd.Run()
	pts.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	if runErr != nil {
		t.Fatalf("the child on the pty failed: %v\n%s", runErr, console.String())
	}
	parent, _ := os.ReadFile(filepath.Join(out, "parent"))
	child, err := os.ReadFile(filepath.Join(out, "claude"))
	if err != nil {
		t.Fatalf("the fake claude did not run: %v\n%s", err, console.String())
	}
	fields := strings.Fields(string(child))
	if len(fields) < 2 {
		t.Fatalf("fake claude wrote %q", child)
	}
	if fields[0] != "no" || !strings.Contains(string(child), "No such device or address") {
		t.Errorf("claude --version could open a controlling terminal: %q", child)
	}
	if fields[1] == strings.TrimSpace(string(parent)) {
		t.Errorf("claude --version shares ccboot's session %s", fields[1])
	}
}

// verifyClaudeOnTerminal is the child of TestVerifyClaudeHasNoTerminal: it
// has the pty as its controlling terminal and runs verifyClaude for real.
func verifyClaudeOnTerminal(t *testing.T, dir string) {
	tty, err := os.Open("/dev/tty")
	if err != nil {
		t.Fatalf("the child has no controlling terminal, the test proves nothing: %v", err)
	}
	tty.Close()
	sid, err := unix.Getsid(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "out/parent"), []byte(fmt.Sprint(sid)), 0o644); err != nil {
		t.Fatal(err)
	}
	env, _ := newTestEnv(t)
	env.Config.ClaudePrefix, env.Config.User = dir, "nobody"
	env.Run = &runner.Exec{}
	if err := verifyClaude(context.Background(), env); err != nil {
		t.Fatal(err)
	}
}
