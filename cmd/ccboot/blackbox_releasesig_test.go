package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
	"github.com/ccboot/ccboot/bootstrap/releasesig"
	"github.com/ccboot/ccboot/steps/claudetest"
)

// TestBlackboxClaudeCodeSignature: the built binary trusts only Anthropic's
// embedded key unless [claude-code] signing_key names another; a manifest
// whose signature does not verify fails the step with the URL and both
// fingerprints, before the executable is requested, and the installed
// version stays; status says when signatures are off or another key is
// trusted.
func TestBlackboxClaudeCodeSignature(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	for _, p := range []string{"usr/local/lib/claude-code", "usr/local/bin/claude"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	imds := aemmtest.Start(t, aemmtest.Default())
	srv := claudetest.New()
	t.Cleanup(srv.Close)
	exe := func(v string) []byte { return claudetest.Executable(v, 1<<20) }
	for _, v := range []string{"2.1.332", "2.1.333"} {
		srv.Add(v, "linux-x64", exe(v))
	}
	trustKey, err := srv.WriteKey(root)
	if err != nil {
		t.Fatal(err)
	}
	run := func(mode, version string, extra ...string) result {
		args := []string{mode, "--root", root, "--only", "claude-code", "--imds-endpoint", imds,
			"--set", "claude-code.version=" + version, "--set", "claude-code.release_url=" + srv.ReleaseURL()}
		return ccboot(t, append(args, extra...)...)
	}
	stillInstalled := func(what string) {
		t.Helper()
		if b, err := os.ReadFile(filepath.Join(root, "usr/local/bin/claude")); err != nil || string(b) != string(exe("2.1.332")) {
			t.Errorf("%s: PREFIX/bin/claude no longer resolves to 2.1.332 (%v)", what, err)
		}
		if _, err := os.Lstat(filepath.Join(root, "usr/local/lib/claude-code/versions/2.1.333")); !os.IsNotExist(err) {
			t.Errorf("%s: a 2.1.333 directory exists (%v)", what, err)
		}
		if n := srv.Requests(claudetest.ExePath("2.1.333", "linux-x64")); n != 0 {
			t.Errorf("%s: the executable was requested %d times", what, n)
		}
	}
	sigURL := srv.ReleaseURL() + "/2.1.333/manifest.json.sig"
	testKey := srv.Signer().Fingerprint()

	if r := run("run", "2.1.332", "--set", trustKey); r.code != 0 {
		t.Fatalf("install with the test key trusted: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	st := ccboot(t, "status", "--root", root, "--imds-endpoint", imds)
	if !strings.Contains(st.stdout, "non-Anthropic key") || !strings.Contains(st.stdout, testKey) {
		t.Errorf("status does not say a non-Anthropic key (%s) is trusted:\n%s", testKey, st.stdout)
	}

	// The production trust: Anthropic's key only.
	r := run("repair", "2.1.333")
	line := claudeCodeLine(r.stdout)
	for _, w := range []string{"by another key", "expected key " + releasesig.AnthropicFingerprint, "signer " + testKey, sigURL, "nothing was installed"} {
		if !strings.Contains(line, w) {
			t.Errorf("Anthropic's key against a test signature: line lacks %q:\n%s", w, line)
		}
	}
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	stillInstalled("a signature by a key ccboot does not trust")

	srv.SignWithOtherKey("2.1.333")
	r = run("repair", "2.1.333", "--set", trustKey)
	line = claudeCodeLine(r.stdout)
	for _, w := range []string{"by another key", "expected key " + testKey, "signer " + srv.OtherSigner().Fingerprint(), sigURL} {
		if !strings.Contains(line, w) {
			t.Errorf("another key's signature: line lacks %q:\n%s", w, line)
		}
	}
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	stillInstalled("another key's signature")

	// A mirror without signatures works only when told, and status says so.
	srv.Unsign("2.1.333")
	if r := run("repair", "2.1.333", "--set", trustKey); r.code != 1 || !strings.Contains(claudeCodeLine(r.stdout), "is missing (404)") {
		t.Errorf("unsigned manifest: exit %d, want 1 naming the 404\n%s", r.code, r.stdout)
	}
	stillInstalled("an unsigned manifest")
	if r := run("repair", "2.1.333", "--set", "claude-code.verify_signature=false"); r.code != 0 {
		t.Fatalf("verify_signature = false: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	st = ccboot(t, "status", "--root", root, "--imds-endpoint", imds)
	if !strings.Contains(st.stdout, "not checked ([claude-code] verify_signature = false)") {
		t.Errorf("status does not say signatures are off:\n%s", st.stdout)
	}
}

// claudeCodeLine is the claude-code step's line of a report.
func claudeCodeLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "claude-code ") {
			return l
		}
	}
	return ""
}
