//go:build e2e

package e2e

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/steps/claudetest"
)

// e2eClaudeVersion is the Claude Code version cache.sh put into the npm
// cache (its claude_version).
const e2eClaudeVersion = "2.1.332"

// Versions the release channel also offers, made from the same executable:
// an upgrade target, one whose manifest does not match its bytes, and one
// whose manifest is signed by a key ccboot does not trust.
const (
	e2eClaudeUpgrade = "2.1.333"
	e2eClaudeBad     = "2.1.334"
	e2eClaudeBadSig  = "2.1.335"
)

// releaseKeyFile is the public key of the channel's signing key in
// /srv/dist (root-owned, 0644); guests trust it through
// [claude-code] signing_key, as a private mirror that re-signs would.
const releaseKeyFile = "release-key.asc"

// releaseDir is the release channel's directory under /srv/dist, served
// on the guest's loopback at releaseURL.
const releaseDir = "claude-code-releases"

var releaseURL = fmt.Sprintf("http://127.0.0.1:%d/%s", distPort, releaseDir)

// releaseChannel lays out, in dist, a release channel made from the real
// platform package @anthropic-ai/claude-code-linux-x64 that cache.sh
// fetched into the npm cache: VERSION/manifest.json, VERSION/linux-x64/claude
// with its signature VERSION/manifest.json.sig (by a test key, whose public
// half is /srv/dist/release-key.asc), and stable. It reads npm's cache directly (index -> content by integrity),
// so nothing is fetched and no npm runs.
func (s *suite) releaseChannel(t *testing.T) {
	t.Helper()
	cache, err := exec.Command(filepath.Join(s.e2eDir, "cache.sh"), "--path").Output()
	if err != nil {
		t.Fatalf("cache.sh --path: %v (build the e2e cache first)", err)
	}
	cacache := filepath.Join(strings.TrimSpace(string(cache)), "srv", "npm-cache", "_cacache")
	key := "/-/claude-code-linux-x64-" + e2eClaudeVersion + ".tgz"
	integrity, err := cacacheIntegrity(filepath.Join(cacache, "index-v5"), key)
	if err != nil {
		t.Fatal(err)
	}
	algo, b64, _ := strings.Cut(integrity, "-")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || algo != "sha512" {
		t.Fatalf("npm cache: integrity %q of %s", integrity, key)
	}
	h := hex.EncodeToString(raw)
	tgz := filepath.Join(cacache, "content-v2", "sha512", h[:2], h[2:4], h[4:])
	exe := filepath.Join(s.dist, releaseDir, e2eClaudeVersion, "linux-x64", "claude")
	sum, size := extractClaude(t, tgz, exe)
	signer, other := claudetest.NewSigner("e2e"), claudetest.NewSigner("e2e-other")
	writeFile(t, filepath.Join(s.dist, releaseKeyFile), string(signer.PublicKey()))
	manifest := func(version, checksum string) {
		m := map[string]any{"version": version, "buildDate": "2026-11-01T00:00:00Z",
			"platforms": map[string]any{"linux-x64": map[string]any{"checksum": checksum, "size": size}}}
		b, _ := json.Marshal(m)
		writeFile(t, filepath.Join(s.dist, releaseDir, version, "manifest.json"), string(b))
		by := signer
		if version == e2eClaudeBadSig {
			by = other
		}
		writeFile(t, filepath.Join(s.dist, releaseDir, version, "manifest.json.sig"), string(by.Sign(b)))
	}
	manifest(e2eClaudeVersion, sum)
	for _, v := range []string{e2eClaudeUpgrade, e2eClaudeBad, e2eClaudeBadSig} {
		dst := filepath.Join(s.dist, releaseDir, v, "linux-x64", "claude")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		// A link, not a copy: QEMU's dist disk copies files, not links.
		if err := os.Symlink("../../"+e2eClaudeVersion+"/linux-x64/claude", dst); err != nil {
			t.Fatal(err)
		}
	}
	manifest(e2eClaudeUpgrade, sum)
	manifest(e2eClaudeBad, strings.Repeat("0", 64))
	manifest(e2eClaudeBadSig, sum)
	writeFile(t, filepath.Join(s.dist, releaseDir, "stable"), e2eClaudeVersion+"\n")
}

// cacacheIntegrity finds the newest index entry whose key ends in suffix.
func cacacheIntegrity(index, suffix string) (string, error) {
	var found string
	err := filepath.WalkDir(index, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			_, js, ok := strings.Cut(sc.Text(), "\t")
			if !ok {
				continue
			}
			var e struct{ Key, Integrity string }
			if json.Unmarshal([]byte(js), &e) == nil && strings.HasSuffix(e.Key, suffix) && e.Integrity != "" {
				found = e.Integrity
			}
		}
		return sc.Err()
	})
	if err == nil && found == "" {
		err = errors.New("npm cache has no " + suffix + "; rebuild the e2e cache (cache.sh)")
	}
	return found, err
}

// extractClaude writes package/claude of the tarball to dst (0755) and
// returns its SHA-256 and size.
func extractClaude(t *testing.T, tgz, dst string) (string, int64) {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no package/claude: %v", tgz, err)
		}
		if hdr.Name != "package/claude" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(out, h), tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(h.Sum(nil)), n
	}
}
