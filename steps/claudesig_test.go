package steps

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/releasesig"
	"github.com/ccboot/ccboot/steps/claudetest"
)

// A channel (stable, latest) is what a compromised mirror controls: naming
// an old release that predates signatures must not skip the check.
func TestClaudeCodeChannelCannotDowngradeToUnsigned(t *testing.T) {
	t.Parallel()
	env, srv, _ := newClaudeEnv(t, "release")
	srv.SetChannel("stable", "2.1.88")
	srv.Unsign("2.1.88")
	env.Config.ClaudeVersion = "stable"
	err := noWait().Apply(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), claudetest.SigPath("2.1.88")+" is missing (404)") {
		t.Fatalf("Apply = %v, want the missing signature refused", err)
	}
	if n := srv.Requests(claudetest.ExePath("2.1.88", "linux-x64")); n != 0 {
		t.Errorf("the executable was requested %d times before the signature was checked", n)
	}
}

func TestClaudeCodeVerifySignatureOff(t *testing.T) {
	t.Parallel()
	env, srv, exe := newClaudeEnv(t, "release")
	srv.Unsign("2.1.332")
	env.Config.ClaudeVersion = "2.1.332"
	env.Config.ClaudeVerifySignature, env.Config.ClaudeSigningKey = false, ""
	if err := noWait().Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if string(readLinked(t, env)) != string(exe("2.1.332")) {
		t.Error("not installed")
	}
	if n := srv.Requests(claudetest.SigPath("2.1.332")); n != 0 {
		t.Errorf("verify_signature = false still fetched the signature %d times", n)
	}
	d := mustCheck(t, env)
	if len(d.Notes) != 2 || !strings.Contains(d.Notes[1], "not checked ([claude-code] verify_signature = false)") {
		t.Errorf("notes = %q, want one saying signatures are off", d.Notes)
	}
}

// Status says when a key other than Anthropic's is trusted, and which.
func TestClaudeCodeNotesNonAnthropicKey(t *testing.T) {
	t.Parallel()
	env, srv, _ := newClaudeEnv(t, "release")
	env.Config.ClaudeVersion = "2.1.332"
	if err := noWait().Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	d := mustCheck(t, env)
	if len(d.Notes) != 2 || !strings.Contains(d.Notes[1], "non-Anthropic key") || !strings.Contains(d.Notes[1], srv.Signer().Fingerprint()) || !strings.Contains(d.Notes[1], releasesig.AnthropicFingerprint) {
		t.Errorf("notes = %q, want one naming the non-Anthropic key's fingerprint", d.Notes)
	}
}

// --verify re-checks the recorded manifest against the trusted key and
// the recorded checksum against the signed manifest, offline.
func TestClaudeCodeVerifyRechecksSignature(t *testing.T) {
	t.Parallel()
	env, srv, _ := newClaudeEnv(t, "release")
	env.Config.ClaudeVersion = "2.1.332"
	if err := noWait().Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	recPath := filepath.Join(env.Root, "usr/local/lib/claude-code/versions/2.1.332/install.json")
	data, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	var rec claudeRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Signer != srv.Signer().Fingerprint() || len(rec.Manifest) == 0 || len(rec.Signature) == 0 {
		t.Fatalf("record = signer %q, %d manifest bytes, %d signature bytes; want the verified manifest kept", rec.Signer, len(rec.Manifest), len(rec.Signature))
	}
	env.Verify = true
	if d := mustCheck(t, env); !d.InSync() {
		t.Fatalf("--verify on an intact install: %q", d.Changes)
	}
	// Trust another key: the recorded signature no longer vouches for it.
	if err := os.WriteFile(filepath.Join(env.Root, claudetest.KeyPath), srv.OtherSigner().PublicKey(), 0o644); err != nil {
		t.Fatal(err)
	}
	if d := mustCheck(t, env); len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "reinstall Claude Code 2.1.332") || !strings.Contains(d.Changes[0], "by another key") {
		t.Errorf("--verify after the trusted key changed: %q, want a reinstall", d.Changes)
	}
	env.Verify = false
	if d := mustCheck(t, env); !d.InSync() {
		t.Errorf("a plain check re-verified: %q", d.Changes)
	}
}

func TestReleaseKeyFileRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, p string)
		want  string
	}{
		{"missing", func(t *testing.T, p string) { _ = os.Remove(p) }, "no such file"},
		{"group-writable", func(t *testing.T, p string) { _ = os.Chmod(p, 0o664) }, "writable by group or others; chmod 0644"},
		{"world-writable", func(t *testing.T, p string) { _ = os.Chmod(p, 0o646) }, "writable by group or others"},
		{"a symbolic link", func(t *testing.T, p string) {
			_ = os.Rename(p, p+".real")
			_ = os.Symlink(filepath.Base(p)+".real", p)
		}, "symbolic link"},
		{"not a key", func(t *testing.T, p string) { _ = os.WriteFile(p, []byte("hello"), 0o644) }, "not an OpenPGP public key"},
		{"owned by a user", func(t *testing.T, p string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			_ = os.Chown(p, 1000, 1000)
		}, "owned by uid 1000, not root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, srv, _ := newClaudeEnv(t, "release")
			tt.setup(t, filepath.Join(env.Root, claudetest.KeyPath))
			env.Config.ClaudeVersion = "2.1.332"
			err := noWait().Apply(context.Background(), env)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "[claude-code] signing_key") {
				t.Fatalf("Apply = %v, want %q", err, tt.want)
			}
			if n := srv.Requests(claudetest.ExePath("2.1.332", "linux-x64")); n != 0 {
				t.Errorf("downloaded with an untrusted key file (%d requests)", n)
			}
		})
	}
}

func TestSignatureRequired(t *testing.T) {
	t.Parallel()
	env, _, _ := newClaudeEnv(t, "release")
	for v, want := range map[string]bool{"2.1.88": false, "1.0.0": false, "2.0.999": false, "2.1.89": true, "2.1.89-rc.1": true, "2.1.332": true, "2.2.0": true, "3.0.0": true, "10.0.0": true} {
		if got := signatureRequired(env, v); got != want {
			t.Errorf("signatureRequired(%s) = %v, want %v", v, got, want)
		}
	}
	env.Config.ClaudeVersion = "latest"
	if !signatureRequired(env, "1.0.0") {
		t.Error("a version a channel named may come unsigned")
	}
}
