package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

const (
	managedSettings = "etc/claude-code/managed-settings.json"
	managedDropIn   = "etc/claude-code/managed-settings.d/10-ccboot.json"
)

func managedEnv(t *testing.T, p string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]map[string]string
	if err := json.Unmarshal(b, &s); err != nil || len(s) != 1 {
		t.Fatalf("%s: want only an env block: %v\n%s", p, err, b)
	}
	return s["env"]
}

func stampOf(t *testing.T, p string) fileStamp {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fileStamp{fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()}
}

// A run writes Claude Code's managed settings (root-owned 0644, the same
// values as the profile.d script, never AWS_PROFILE); a second run changes
// nothing.
func TestBlackboxClaudeSettingsRunTwice(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	flags := []string{"--root", root, "--imds-endpoint", aemmtest.Start(t, aemmtest.Default())}
	if r := ccboot(t, append([]string{"run"}, flags...)...); r.code != 0 || !strings.Contains(r.stdout, "claude-settings changed") {
		t.Fatalf("run: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	p := filepath.Join(root, managedSettings)
	env := managedEnv(t, p)
	for k, v := range map[string]string{
		"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "eu-west-1", "ANTHROPIC_MODEL": "eu.anthropic.claude-sonnet-4-6",
		"ANTHROPIC_DEFAULT_SONNET_MODEL": "eu.anthropic.claude-sonnet-4-6",
		"ANTHROPIC_DEFAULT_HAIKU_MODEL":  "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
		"ANTHROPIC_DEFAULT_OPUS_MODEL":   "eu.anthropic.claude-opus-4-6-v1",
		"DISABLE_UPDATES":                "1", "DISABLE_AUTOUPDATER": "1",
	} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if v, ok := env["AWS_PROFILE"]; ok {
		t.Errorf("AWS_PROFILE = %q in the managed settings; it is per tier", v)
	}
	profile, _ := os.ReadFile(filepath.Join(root, "etc/profile.d/claude-bedrock.sh"))
	for k, v := range env {
		if !strings.Contains(string(profile), "export "+k+"='"+v+"'\n") {
			t.Errorf("profile.d does not export %s=%q as the managed settings set it:\n%s", k, v, profile)
		}
	}
	fi, _ := os.Stat(p)
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o644 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("%s: mode %v owner %d:%d, want 0644 root", p, fi.Mode().Perm(), st.Uid, st.Gid)
	}
	before := stampOf(t, p)
	time.Sleep(20 * time.Millisecond)
	if r := ccboot(t, append([]string{"repair"}, flags...)...); r.code != 0 || !strings.Contains(r.stdout, "claude-settings ok") {
		t.Fatalf("repair: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if after := stampOf(t, p); after != before {
		t.Errorf("a no-op repair rewrote %s: %+v -> %+v", p, before, after)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/claude-code/managed-settings.d")); err == nil {
		t.Error("a drop-in directory appeared though managed-settings.json is ccboot's")
	}
}

// A managed-settings.json someone else wrote is kept byte for byte and
// untouched; ccboot's values go to its drop-in, status says why, and a
// second run changes neither.
func TestBlackboxClaudeSettingsKeepsForeignFile(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	flags := []string{"--root", root, "--imds-endpoint", aemmtest.Start(t, aemmtest.Default())}
	p := filepath.Join(root, managedSettings)
	foreign := `{"permissions": {"deny": ["Read(./.env)"]}, "env": {"HTTPS_PROXY": "http://proxy.internal:3128"}}` + "\n"
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(foreign), 0o644); err != nil {
		t.Fatal(err)
	}
	kept := stampOf(t, p)
	if r := ccboot(t, append([]string{"run"}, flags...)...); r.code != 0 || !strings.Contains(r.stdout, "claude-settings changed") {
		t.Fatalf("run: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if b, _ := os.ReadFile(p); string(b) != foreign || stampOf(t, p) != kept {
		t.Errorf("the foreign %s was changed:\n%s", p, b)
	}
	dropIn := filepath.Join(root, managedDropIn)
	if env := managedEnv(t, dropIn); env["CLAUDE_CODE_USE_BEDROCK"] != "1" || env["ANTHROPIC_MODEL"] != "eu.anthropic.claude-sonnet-4-6" {
		t.Errorf("drop-in env: %v", env)
	}
	rep, code := statusJSON(t, flags...)
	st, _ := rep.Step("claude-settings")
	if code != 0 || !st.Result.Succeeded() || !strings.Contains(strings.Join(st.Notes, "\n"), "not written by ccboot") {
		t.Errorf("status exit %d, claude-settings %+v: want success with a note that the file is kept", code, st)
	}
	before := stampOf(t, dropIn)
	time.Sleep(20 * time.Millisecond)
	if r := ccboot(t, append([]string{"repair"}, flags...)...); r.code != 0 || !strings.Contains(r.stdout, "claude-settings ok") {
		t.Fatalf("repair: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if stampOf(t, dropIn) != before || stampOf(t, p) != kept {
		t.Error("a no-op repair rewrote the drop-in or the foreign file")
	}
}

// A pin the Region cannot use: one line naming the key and what works,
// exit 1, no settings file written.
func TestBlackboxClaudeSettingsBadPin(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	flags := []string{"--root", root, "--imds-endpoint", aemmtest.Start(t, aemmtest.Default()),
		"--set", "bedrock.haiku_model=us.anthropic.claude-haiku-4-5-20251001-v1:0"}
	r := ccboot(t, append([]string{"run"}, flags...)...)
	if r.code != 1 {
		t.Fatalf("run: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	rep, _ := statusJSON(t, flags...)
	st, _ := rep.Step("claude-settings")
	if st.Result != bootstrap.ResultFailed || strings.Contains(st.Error, "\n") ||
		!strings.Contains(st.Error, "[bedrock] haiku_model") || !strings.Contains(st.Error, "eu, global") {
		t.Errorf("claude-settings %+v: want one failed line naming [bedrock] haiku_model and the prefixes that work", st)
	}
	if _, err := os.Lstat(filepath.Join(root, managedSettings)); err == nil {
		t.Error("the failed step wrote the managed settings")
	}
}

// The managed settings hold the instance's Region: bake leaves them out of
// the image, and the image's first boot writes them.
func TestBlackboxClaudeSettingsNotBaked(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	bake := ccboot(t, "bake", "--root", root, "--imds-endpoint", "http://127.0.0.1:9")
	if bake.code != 0 || strings.Contains(bake.stdout, "claude-settings") {
		t.Fatalf("bake exit %d (and it must not run claude-settings):\n%s%s", bake.code, bake.stdout, bake.stderr)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/claude-code")); err == nil {
		t.Fatal("bake wrote /etc/claude-code into the image")
	}
	inst := aemmtest.Default()
	inst.Region = "ap-northeast-1"
	if r := ccboot(t, "run", "--root", root, "--imds-endpoint", aemmtest.Start(t, inst)); r.code != 0 {
		t.Fatalf("first boot: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if env := managedEnv(t, filepath.Join(root, managedSettings)); env["AWS_REGION"] != "ap-northeast-1" || env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] != "jp.anthropic.claude-haiku-4-5-20251001-v1:0" {
		t.Errorf("first boot's managed settings: %v", env)
	}
}
