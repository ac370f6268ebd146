package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/releasesig"
)

// firstSignedRelease is the first Claude Code release whose manifest
// Anthropic signs (VERSION/manifest.json.sig).
var firstSignedRelease = [3]int{2, 1, 89}

// maxSignatureBytes bounds the signature read: a detached signature by an
// RSA 4096 key is about 600 bytes armored.
const maxSignatureBytes = 64 << 10

// maxKeyFileBytes bounds [claude-code] signing_key's file.
const maxKeyFileBytes = 1 << 20

// signatureRequired: a release from 2.1.89 on must be signed, and so must
// any version a channel (stable, latest) named, since the channel is what a
// compromised mirror controls: it could name an old, unsigned version.
// Only a version the operator pinned before 2.1.89 may come unsigned.
func signatureRequired(env *bootstrap.Env, version string) bool {
	if v := env.Config.ClaudeVersion; v == "stable" || v == "latest" {
		return true
	}
	core, _, _ := strings.Cut(version, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return true
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return true
		}
		if n != firstSignedRelease[i] {
			return n > firstSignedRelease[i]
		}
	}
	return true // 2.1.89 itself, and its pre-releases
}

// releaseKey is the key manifests are checked with: Anthropic's embedded,
// pinned key, or the operator's [claude-code] signing_key file, which must
// be root's and writable by no one else (root never trusts a key a user
// could have put there).
func releaseKey(env *bootstrap.Env) (*releasesig.Key, error) {
	name := env.Config.ClaudeSigningKey
	if name == "" {
		return releasesig.Anthropic()
	}
	where := "claude-code: [claude-code] signing_key " + env.Sys.Path(name)
	var refused error
	data, _, err := env.Sys.ReadFileCheck(name, func(fi fs.FileInfo) error {
		uid, _ := fsroot.Owner(fi)
		switch {
		case uid != 0 && uid != os.Geteuid():
			refused = fmt.Errorf("%s is owned by uid %d, not root; chown root:root it (ccboot trusts only a key root put there)", where, uid)
		case fi.Mode().Perm()&0o022 != 0:
			refused = fmt.Errorf("%s has mode %04o, writable by group or others; chmod 0644 it", where, fi.Mode().Perm())
		case fi.Size() > maxKeyFileBytes:
			refused = fmt.Errorf("%s is %d bytes, more than a public key (%d); give the exported public key only", where, fi.Size(), maxKeyFileBytes)
		}
		return refused
	})
	switch {
	case refused != nil:
		return nil, refused
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: no such file; put the mirror's public key there, or empty the setting to use Anthropic's key", where)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	k, err := releasesig.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", where, err)
	}
	return k, nil
}

// manifestSignature fetches mURL's detached signature (mURL + ".sig") and
// checks it over data, the manifest bytes as fetched, before anything in
// them is trusted. It returns the signature, or nil when none is checked
// (verify_signature = false, or a pinned release older than 2.1.89 that
// has none).
func (s claudeSource) manifestSignature(ctx context.Context, version, mURL string, data []byte) (sig []byte, signer string, err error) {
	if !s.env.Config.ClaudeVerifySignature {
		return nil, "", nil
	}
	key, err := releaseKey(s.env)
	if err != nil {
		return nil, "", err
	}
	sigURL := mURL + ".sig"
	sig, err = s.getSmall(ctx, sigURL, "", maxSignatureBytes)
	switch {
	case errors.Is(err, errNotFound) && !signatureRequired(s.env, version):
		s.env.Log.Warn("Claude Code release predates signed manifests; its checksum is trusted as served", zap.String("version", version), zap.String("url", sigURL))
		return nil, "", nil
	case errors.Is(err, errNotFound):
		return nil, "", fmt.Errorf("claude-code: refusing Claude Code %s: %s is missing (404), and releases from 2.1.89 on (and any a channel names) are signed; expected a signature by key %s, signer none; nothing was installed; a mirror without signatures needs [claude-code] verify_signature = false", version, sigURL, key.Fingerprint())
	case err != nil:
		return nil, "", err
	}
	if err := key.Verify(data, sig); err != nil {
		return nil, "", fmt.Errorf("claude-code: refusing Claude Code %s: %s: %v; nothing was installed; check [claude-code] release_url (a mirror that re-signs needs [claude-code] signing_key)", version, sigURL, err)
	}
	return sig, key.Fingerprint(), nil
}

// recordSignature is what --verify re-checks offline: the recorded
// manifest still verifies against the trusted key and still names the
// recorded SHA-256 for the platform. "" means it holds.
func recordSignature(env *bootstrap.Env, rec *claudeRecord) string {
	if rec.Source != "release" || !env.Config.ClaudeVerifySignature {
		return ""
	}
	if len(rec.Signature) == 0 {
		if signatureRequired(env, rec.Version) {
			return "its install record holds no verified manifest signature"
		}
		return ""
	}
	key, err := releaseKey(env)
	if err != nil {
		return err.Error()
	}
	if err := key.Verify(rec.Manifest, rec.Signature); err != nil {
		return "its recorded manifest signature no longer verifies: " + err.Error()
	}
	var m releaseManifest
	if err := json.Unmarshal(rec.Manifest, &m); err != nil || !strings.EqualFold(m.Platforms[rec.Platform].Checksum, rec.SHA256) {
		return "its recorded sha256 is not the one its signed manifest gives for " + rec.Platform
	}
	return ""
}

// signatureNotes are what status shows about manifest signatures when they
// are not checked against Anthropic's key.
func signatureNotes(env *bootstrap.Env, rec *claudeRecord) []string {
	if env.Config.ClaudeSource != "release" {
		return nil
	}
	switch {
	case !env.Config.ClaudeVerifySignature:
		return []string{"manifest signatures are not checked ([claude-code] verify_signature = false): checksums are trusted as " + env.Config.ClaudeReleaseURL + " serves them"}
	case env.Config.ClaudeSigningKey != "":
		fpr := "unreadable"
		if k, err := releaseKey(env); err == nil {
			fpr = k.Fingerprint()
		}
		return []string{fmt.Sprintf("manifests are checked against a non-Anthropic key: %s (fingerprint %s, [claude-code] signing_key), not Anthropic's %s", env.Sys.Path(env.Config.ClaudeSigningKey), fpr, releasesig.AnthropicFingerprint)}
	case rec != nil && rec.Source == "release" && len(rec.Signature) == 0 && !signatureRequired(env, rec.Version):
		return []string{fmt.Sprintf("Claude Code %s predates signed manifests (2.1.89): its checksum was trusted as served", rec.Version)}
	}
	return nil
}
