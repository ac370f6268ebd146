package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// installFakeClaude lays out what `npm install -g` leaves under a prefix.
func installFakeClaude(t *testing.T, env *bootstrap.Env, prefix, version string, bin bool) {
	t.Helper()
	pkgDir := filepath.Join(prefix, "lib/node_modules/@anthropic-ai/claude-code")
	writeTestFile(t, env.Root, filepath.Join(pkgDir, "package.json"), `{"name":"@anthropic-ai/claude-code","version":"`+version+`","bin":{"claude":"cli.js"}}`, 0o644)
	writeTestFile(t, env.Root, filepath.Join(pkgDir, "cli.js"), "#!/usr/bin/env node\n", 0o755)
	if bin {
		if err := os.MkdirAll(filepath.Join(env.Root, prefix, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../lib/node_modules/@anthropic-ai/claude-code/cli.js", filepath.Join(env.Root, prefix, "bin/claude")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClaudeCodeCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		want      string // [claude-code] version
		prefix    string
		installed string // "" not installed
		bin       bool
		changes   []string
		notes     int
	}{
		{name: "same version", want: "2.1.332", installed: "2.1.332", bin: true, notes: 1},
		{name: "other version", want: "2.1.332", installed: "2.1.300", bin: true,
			changes: []string{"install @anthropic-ai/claude-code 2.1.332 (installed: 2.1.300)"}},
		{name: "not installed", want: "2.1.332",
			changes: []string{"install @anthropic-ai/claude-code 2.1.332 (not installed)"}},
		{name: "bin link missing", want: "2.1.332", installed: "2.1.332",
			changes: []string{"install @anthropic-ai/claude-code 2.1.332 (/usr/local/bin/claude missing)"}},
		{name: "latest, something installed", want: "latest", installed: "2.0.1", bin: true, notes: 1},
		{name: "latest, not installed", want: "latest",
			changes: []string{"install @anthropic-ai/claude-code latest (not installed)"}},
		{name: "custom prefix", want: "2.1.332", prefix: "/opt/claude", installed: "2.1.332", bin: true, notes: 1},
		{name: "custom prefix, other version", want: "2.1.332", prefix: "/opt/claude", installed: "1.0.0", bin: true,
			changes: []string{"install @anthropic-ai/claude-code 2.1.332 (installed: 1.0.0)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, fake := newTestEnv(t)
			env.Config.ClaudeVersion = tt.want
			if tt.prefix != "" {
				env.Config.ClaudePrefix = tt.prefix
			}
			if tt.installed != "" {
				installFakeClaude(t, env, env.Config.ClaudePrefix, tt.installed, tt.bin)
			}
			d, err := ClaudeCode{}.Check(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d.Changes, tt.changes) {
				t.Errorf("Changes = %q, want %q", d.Changes, tt.changes)
			}
			if len(d.Notes) != tt.notes {
				t.Errorf("Notes = %q, want %d", d.Notes, tt.notes)
			}
			if tt.notes > 0 && !strings.Contains(d.Notes[0], tt.installed) {
				t.Errorf("note %q does not name the installed version %s", d.Notes[0], tt.installed)
			}
			if calls := fake.Calls(); len(calls) != 0 {
				t.Errorf("Check ran %q; it must only read package.json", calls)
			}
		})
	}
}

func TestClaudeCodeCheckBrokenPackageJSON(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	installFakeClaude(t, env, "/usr/local", "2.1.332", true)
	writeTestFile(t, env.Root, "usr/local/lib/node_modules/@anthropic-ai/claude-code/package.json", "{trunc", 0o644)
	d, err := ClaudeCode{}.Check(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "unreadable") {
		t.Errorf("Changes = %q, want a reinstall of an unreadable package", d.Changes)
	}
}

func TestClaudeCodeApplyArgv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		npms    []string // present under <root>/usr/bin
		wantNpm string
	}{
		{"plain npm", []string{"npm", "npm-22"}, "npm"},
		{"al2023 namespaced only", []string{"npm-22"}, "npm-22"},
		{"prefers newer namespaced", []string{"npm-22", "npm-24"}, "npm-24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, fake := newTestEnv(t)
			for _, n := range tt.npms {
				writeTestFile(t, env.Root, "usr/bin/"+n, "", 0o755)
			}
			var got []runner.Cmd
			var mu sync.Mutex
			fake.On("chroot", func(c runner.Cmd) (runner.Result, error) {
				mu.Lock()
				got = append(got, c)
				mu.Unlock()
				return runner.Result{}, nil
			})
			if err := (ClaudeCode{}).Apply(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("ran %d commands, want 1 npm install (no verification in root mode): %q", len(got), fake.Calls())
			}
			want := []string{env.Root, tt.wantNpm, "install", "-g", "--prefix", "/usr/local", "--no-fund", "--no-audit", "--loglevel=error", "@anthropic-ai/claude-code@" + bootstrap.DefaultClaudeCodeVersion}
			if got[0].Name != "chroot" || !reflect.DeepEqual(got[0].Args, want) {
				t.Errorf("npm = %s %q\nwant chroot %q", got[0].Name, got[0].Args, want)
			}
			if !slices.Contains(got[0].Env, "npm_config_update_notifier=false") {
				t.Errorf("npm env = %q", got[0].Env)
			}
		})
	}
}

func TestClaudeCodeApplyNoNpm(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	err := (ClaudeCode{}).Apply(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "no npm in") || !strings.Contains(err.Error(), "npm-22") {
		t.Fatalf("err = %v, want one saying where npm was looked for", err)
	}
	if len(fake.Calls()) != 0 {
		t.Errorf("ran %q without npm", fake.Calls())
	}
}

func npmFailure(stderr string) func(runner.Cmd) (runner.Result, error) {
	return func(c runner.Cmd) (runner.Result, error) {
		return runner.Result{ExitCode: 1, Stderr: []byte(stderr)}, &runner.ExitError{Cmd: c.String(), Code: 1, Stderr: runner.Tail([]byte(stderr), 3)}
	}
}

func TestClaudeCodeRetries(t *testing.T) {
	t.Parallel()
	const (
		econnreset = "npm error code ECONNRESET\nnpm error network aborted\nnpm error network This is a problem related to network connectivity.\n"
		etarget    = "npm error code ETARGET\nnpm error notarget No matching version found for @anthropic-ai/claude-code@9.9.9.\n"
		e503       = "npm error code E503\nnpm error 503 Service Unavailable - GET https://registry.npmjs.org/@anthropic-ai%2fclaude-code\n"
		eacces     = "npm error code EACCES\nnpm error syscall mkdir\nnpm error path /usr/local/lib/node_modules\n"
	)
	tests := []struct {
		name      string
		retries   int
		failures  []string // stderr of successive attempts; then success
		wantCalls int
		wantWaits []time.Duration
		wantErr   string
	}{
		{"reset then ok", 3, []string{econnreset, econnreset}, 3, []time.Duration{2 * time.Second, 4 * time.Second}, ""},
		{"reset every time", 3, []string{econnreset, econnreset, econnreset, econnreset}, 3, []time.Duration{2 * time.Second, 4 * time.Second}, "attempt 3 of 3"},
		{"5xx is retried", 2, []string{e503}, 2, []time.Duration{2 * time.Second}, ""},
		{"no such version: no retry", 3, []string{etarget}, 1, nil, "claude-code: version 9.9.9 does not exist on the npm registry; set [claude-code] version"},
		{"permission: no retry", 3, []string{eacces}, 1, nil, "EACCES"},
		{"one attempt configured", 1, []string{econnreset}, 1, nil, "attempt 1 of 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, fake := newTestEnv(t)
			env.Config.NpmRetries = tt.retries
			env.Config.ClaudeVersion = "9.9.9"
			writeTestFile(t, env.Root, "usr/bin/npm", "", 0o755)
			var mu sync.Mutex
			n := 0
			fake.On("chroot "+env.Root+" npm install", func(c runner.Cmd) (runner.Result, error) {
				mu.Lock()
				i := n
				n++
				mu.Unlock()
				if i < len(tt.failures) {
					return npmFailure(tt.failures[i])(c)
				}
				return runner.Result{}, nil
			})
			var waits []time.Duration
			step := ClaudeCode{sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
			err := step.Apply(context.Background(), env)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Apply: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Apply error = %v, want it to contain %q", err, tt.wantErr)
			}
			if n != tt.wantCalls {
				t.Errorf("npm attempts = %d, want %d", n, tt.wantCalls)
			}
			if !reflect.DeepEqual(waits, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", waits, tt.wantWaits)
			}
		})
	}
}

func TestClaudeCodeLiveVerifiesAsUser(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	// Live mode without touching the host: the runner is fake and all file
	// reads go through env.Sys, which stays the temp tree.
	env.Root = "/"
	writeTestFile(t, env.Sys.Dir(), "usr/bin/npm", "", 0o755)
	fake.OnOutput("npm install -g --prefix /usr/local", "")
	fake.OnOutput("runuser -u ec2-user -- /usr/local/bin/claude --version", "2.1.332 (Claude Code)\n")
	if err := (ClaudeCode{}).Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls()
	if len(calls) != 2 || !strings.HasPrefix(calls[0], "npm install") || calls[1] != "runuser -u ec2-user -- /usr/local/bin/claude --version" {
		t.Errorf("calls = %q, want npm install (no chroot) then runuser verification", calls)
	}

	failing, fake2 := newTestEnv(t)
	failing.Root = "/"
	writeTestFile(t, failing.Sys.Dir(), "usr/bin/npm", "", 0o755)
	fake2.OnOutput("npm install", "")
	fake2.OnExit("runuser", 127, "claude: error while loading shared libraries")
	err := (ClaudeCode{}).Apply(context.Background(), failing)
	if err == nil || !strings.Contains(err.Error(), "--version` as ec2-user failed") {
		t.Fatalf("err = %v, want the verification failure", err)
	}
}

// TestClaudeCodeCheckRealNpmLayout installs a tiny package named
// @anthropic-ai/claude-code from a local tarball with the real npm (no
// network) and checks that Check reads the layout npm really produces.
func TestClaudeCodeCheckRealNpmLayout(t *testing.T) {
	t.Parallel()
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm not installed; this test needs the real npm")
	}
	work := t.TempDir()
	src := filepath.Join(work, "src")
	writeTestFile(t, src, "package.json", `{"name":"@anthropic-ai/claude-code","version":"9.8.7","bin":{"claude":"cli.js"},"engines":{"node":">=22"}}`, 0o644)
	writeTestFile(t, src, "cli.js", "#!/usr/bin/env node\nconsole.log('9.8.7 (Claude Code)')\n", 0o755)
	npmEnv := append(os.Environ(), "npm_config_cache="+filepath.Join(work, "cache"), "npm_config_update_notifier=false", "HOME="+work)
	npmRun := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command(npm, args...)
		cmd.Dir, cmd.Env = dir, npmEnv
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("npm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	npmRun(src, "pack", "--pack-destination", work, "--silent")
	tarball := filepath.Join(work, "anthropic-ai-claude-code-9.8.7.tgz")
	if _, err := os.Stat(tarball); err != nil {
		t.Fatalf("npm pack did not produce %s: %v", tarball, err)
	}

	env, _ := newTestEnv(t)
	prefix := filepath.Join(env.Root, "usr/local")
	npmRun(work, "install", "-g", "--prefix", prefix, "--offline", "--no-fund", "--no-audit", "--loglevel=error", tarball)

	for _, tt := range []struct {
		version string
		changes []string
	}{
		{"9.8.7", nil},
		{"9.8.8", []string{"install @anthropic-ai/claude-code 9.8.8 (installed: 9.8.7)"}},
	} {
		env.Config.ClaudeVersion = tt.version
		d, err := ClaudeCode{}.Check(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(d.Changes, tt.changes) {
			t.Errorf("version %s: Changes = %q, want %q", tt.version, d.Changes, tt.changes)
		}
	}
	// npm's bin entry is a symlink; Check must accept it.
	fi, err := os.Lstat(filepath.Join(prefix, "bin/claude"))
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("npm did not create bin/claude as a symlink (%v, %v); the Lstat path is untested", fi, err)
	}
}
