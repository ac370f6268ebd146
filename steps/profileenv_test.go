package steps

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/bedrock"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// checkGolden compares got with testdata/golden/name (or rewrites it with -update).
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (rerun with -update if intended):\n%s", name, bootstrap.UnifiedDiff(p, want, got))
	}
}

// convergeStep runs Check (expecting drift), Apply, and Check again
// (expecting none), the way the engine does.
func convergeStep(t *testing.T, env *bootstrap.Env, s bootstrap.Step) bootstrap.Drift {
	t.Helper()
	ctx := context.Background()
	before, err := s.Check(ctx, env)
	if err != nil {
		t.Fatalf("%s: Check: %v", s.Name(), err)
	}
	if err := s.Apply(ctx, env); err != nil {
		t.Fatalf("%s: Apply: %v", s.Name(), err)
	}
	after, err := s.Check(ctx, env)
	if err != nil {
		t.Fatalf("%s: Check after Apply: %v", s.Name(), err)
	}
	if !after.InSync() {
		t.Fatalf("%s: not in sync after Apply: %q\n%s", s.Name(), after.Changes, after.Diff)
	}
	return before
}

// fileStamp is what changes when a file is rewritten.
type fileStamp struct {
	ino   uint64
	mtime time.Time
	ctime syscall.Timespec
}

func stampOf(t *testing.T, p string) fileStamp {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileStamp{ino: st.Ino, mtime: fi.ModTime(), ctime: st.Ctim}
}

// assertSecondApplyIsNoop applies s again and asserts the file at p was not
// touched (same inode, mtime and ctime) and Check reports nothing.
func assertSecondApplyIsNoop(t *testing.T, env *bootstrap.Env, s bootstrap.Step, p string) {
	t.Helper()
	before := stampOf(t, p)
	if err := s.Apply(context.Background(), env); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if after := stampOf(t, p); after != before {
		t.Errorf("second Apply touched %s: %+v -> %+v", p, before, after)
	}
	d, err := s.Check(context.Background(), env)
	if err != nil || !d.InSync() {
		t.Errorf("Check after second Apply: %v %q", err, d.Changes)
	}
}

func ownerOf(t *testing.T, p string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode()
}

func TestProfileEnvGolden(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	d := convergeStep(t, env, ProfileEnv{})
	p := filepath.Join(env.Root, profileEnvPath)
	if len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "create") || !strings.Contains(d.Diff, "+export ANTHROPIC_MODEL=") {
		t.Errorf("first Check: %q\n%s", d.Changes, d.Diff)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "profile-env.sh", got)
	if uid, gid, mode := ownerOf(t, p); uid != 0 || gid != 0 || mode != 0o644 {
		t.Errorf("%s: %d:%d %v, want 0:0 -rw-r--r--", p, uid, gid, mode)
	}
	if uid, gid, mode := ownerOf(t, filepath.Dir(p)); uid != 0 || gid != 0 || mode != os.ModeDir|0o755 {
		t.Errorf("%s: %d:%d %v, want 0:0 drwxr-xr-x", filepath.Dir(p), uid, gid, mode)
	}
	assertSecondApplyIsNoop(t, env, ProfileEnv{}, p)
}

func TestProfileEnvValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		region     string // config override
		autoUpdate bool
		want       []string
		notWant    []string
	}{
		{name: "defaults", want: []string{"export AWS_REGION='eu-west-1'\n", "export DISABLE_AUTOUPDATER='1'\n", "export CLAUDE_CODE_USE_BEDROCK='1'\n"}},
		{name: "region override", region: "us-gov-west-1", want: []string{"export AWS_REGION='us-gov-west-1'\n"}, notWant: []string{"eu-west-1"}},
		{name: "auto update on", autoUpdate: true, notWant: []string{"DISABLE_AUTOUPDATER"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			env.Config.Region = tc.region
			env.Config.ClaudeAutoUpdate = tc.autoUpdate
			env.Config.Model = "anthropic.claude-opus-4-1:0"
			convergeStep(t, env, ProfileEnv{})
			got, err := os.ReadFile(filepath.Join(env.Root, profileEnvPath))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range append(tc.want, "export ANTHROPIC_MODEL='anthropic.claude-opus-4-1:0'\n") {
				if !strings.Contains(string(got), w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(string(got), w) {
					t.Errorf("unexpected %q in:\n%s", w, got)
				}
			}
		})
	}
}

// The default model gets the prefix of the instance's Region; a configured
// profile the Region cannot use fails the step, naming Region, prefix and
// what works; other IDs are taken as given.
func TestProfileEnvModelForRegion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, region, model string
		want                string   // ANTHROPIC_MODEL written
		wantErr             []string // or the step fails with all of these
	}{
		{name: "default in eu-west-1 (IMDS)", model: bedrock.DefaultModel, want: "eu.anthropic.claude-sonnet-4-6"},
		{name: "default in Tokyo", region: "ap-northeast-1", model: bedrock.DefaultModel, want: "jp.anthropic.claude-sonnet-4-6"},
		{name: "default in GovCloud", region: "us-gov-west-1", model: bedrock.DefaultModel, want: "us-gov.anthropic.claude-sonnet-4-6"},
		{name: "default in China", region: "cn-north-1", model: bedrock.DefaultModel, want: "anthropic.claude-sonnet-4-6"},
		{name: "us profile in eu-west-1", model: "us.anthropic.claude-sonnet-4-6",
			wantErr: []string{"profile-env", "eu-west-1", "us.", "eu, global"}},
		{name: "global in eu-west-1", model: "global.anthropic.claude-sonnet-4-6", want: "global.anthropic.claude-sonnet-4-6"},
		{name: "ARN as given", model: "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/x1", want: "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/x1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			env.Config.Region = tc.region
			env.Config.Model = tc.model
			p := filepath.Join(env.Root, profileEnvPath)
			if tc.wantErr != nil {
				_, err := ProfileEnv{}.Check(context.Background(), env)
				for _, w := range tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("Check error = %v, want one naming %q", err, w)
					}
				}
				if err := (ProfileEnv{}).Apply(context.Background(), env); err == nil {
					t.Error("Apply succeeded with a profile the Region cannot use")
				}
				if _, err := os.Lstat(p); err == nil {
					t.Error("the failed step wrote the file")
				}
				return
			}
			convergeStep(t, env, ProfileEnv{})
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if w := "export ANTHROPIC_MODEL='" + tc.want + "'\n"; !strings.Contains(string(got), w) {
				t.Errorf("missing %q in:\n%s", w, got)
			}
		})
	}
}

func TestProfileEnvDrift(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	convergeStep(t, env, ProfileEnv{})
	p := filepath.Join(env.Root, profileEnvPath)
	ctx := context.Background()

	if err := os.WriteFile(p, []byte("export ANTHROPIC_MODEL=old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, testUID, testGID); err != nil {
		t.Fatal(err)
	}
	d, err := ProfileEnv{}.Check(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(d.Changes, "\n")
	for _, w := range []string{"update", "chmod", "0644", "chown", "0:0"} {
		if !strings.Contains(joined, w) {
			t.Errorf("changes %q lack %q", d.Changes, w)
		}
	}
	if !strings.Contains(d.Diff, "-export ANTHROPIC_MODEL=old") || !strings.Contains(d.Diff, "+export ANTHROPIC_MODEL='eu.anthropic") {
		t.Errorf("diff:\n%s", d.Diff)
	}
	if got, _ := os.ReadFile(p); string(got) != "export ANTHROPIC_MODEL=old\n" {
		t.Errorf("Check changed the file: %q", got)
	}
	convergeStep(t, env, ProfileEnv{})
	if uid, gid, mode := ownerOf(t, p); uid != 0 || gid != 0 || mode != 0o644 {
		t.Errorf("after repair: %d:%d %v", uid, gid, mode)
	}
}

func TestProfileEnvRegionError(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	m := testMetadata()
	m.Err = os.ErrDeadlineExceeded
	env.Meta = m
	_, err := ProfileEnv{}.Check(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "profile-env") || !strings.Contains(err.Error(), "[aws] region") {
		t.Fatalf("err = %v, want a profile-env error naming [aws] region", err)
	}
}

// hostileValues are strings that would run code if they reached a shell
// unquoted or badly quoted. Each touches canary.
func hostileValues(canary string) []string {
	return []string{
		"x'$(touch " + canary + ")'",
		"$(touch " + canary + ")",
		"`touch " + canary + "`",
		"';touch " + canary + ";'",
		"a b\"c\\d$HOME*?[x]",
		"line1\nline2; touch " + canary,
		"'",
		"''''",
		"\\'",
		"",
	}
}

// TestShellQuoteRealShell runs the real /bin/sh on quoted values, both
// directly and by sourcing a rendered profile.d script whose Config was
// built by hand (no validation), and checks that nothing runs and every
// value comes back byte for byte.
func TestShellQuoteRealShell(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	canary := filepath.Join(dir, "PWNED")
	for i, v := range hostileValues(canary) {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(v)).Output()
		if err != nil {
			t.Fatalf("value %d %q: %v", i, v, err)
		}
		if string(out) != v {
			t.Errorf("value %d: sh printed %q, want %q", i, out, v)
		}

		env, _ := newTestEnv(t)
		cfg := *env.Config
		cfg.Model = v
		cfg.Region = "r" + v
		env.Config = &cfg
		if err := (ProfileEnv{}).Apply(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		script := filepath.Join(env.Root, profileEnvPath)
		cmd := exec.Command("sh", "-c", `. "$1"; printf '%s\n%s' "$ANTHROPIC_MODEL" "$AWS_REGION"`, "sh", script)
		cmd.Dir = dir
		out, err = cmd.Output()
		if err != nil {
			t.Fatalf("sourcing script for value %q: %v", v, err)
		}
		if want := v + "\nr" + v; string(out) != want {
			t.Errorf("sourced value %d: got %q, want %q", i, out, want)
		}
	}
	if _, err := os.Lstat(canary); err == nil {
		t.Fatal("a quoted value ran code: the canary file exists")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("the shell created files: %v", entries)
	}
}
