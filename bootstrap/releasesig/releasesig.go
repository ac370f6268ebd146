// Package releasesig checks the OpenPGP signatures Anthropic publishes on
// Claude Code's release manifests: VERSION/manifest.json.sig, a detached
// signature over VERSION/manifest.json, for releases from 2.1.89 on. A
// manifest that verifies ties every checksum in it, and so the executable
// ccboot installs, to Anthropic's release key rather than to whoever served
// the bytes.
package releasesig

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// anthropicKey is Anthropic's "Claude Code Release Signing" public key as
// published at https://downloads.claude.ai/keys/claude-code.asc, whose
// fingerprint Anthropic's setup page ("Binary integrity and code signing",
// code.claude.com/docs/en/setup) gives. Anthropic() refuses it unless its
// fingerprint is AnthropicFingerprint, so a swapped file cannot slip in.
//
//go:embed claude-code-release-signing.asc
var anthropicKey []byte

// AnthropicFingerprint pins the embedded key (RSA 4096,
// "Anthropic Claude Code Release Signing <security@anthropic.com>").
const AnthropicFingerprint = "31DDDE24DDFAB679F42D7BD2BAA929FF1A7ECACE"

// Key is one trusted public key: the manifest's signature must be made by
// its primary key or one of its signing subkeys.
type Key struct {
	entity      *openpgp.Entity
	fingerprint string
}

// Anthropic is the embedded key, checked against AnthropicFingerprint.
func Anthropic() (*Key, error) { return pinned(anthropicKey, AnthropicFingerprint) }

// pinned parses data and refuses it unless its fingerprint is want.
func pinned(data []byte, want string) (*Key, error) {
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("releasesig: the embedded release key: %w; this ccboot build is broken, use a released one", err)
	}
	if k.fingerprint != want {
		return nil, fmt.Errorf("releasesig: the embedded release key has fingerprint %s, not the pinned %s; this ccboot build is broken, use a released one", k.fingerprint, want)
	}
	return k, nil
}

// Parse reads exactly one OpenPGP public key, armored or binary.
func Parse(data []byte) (*Key, error) {
	var list openpgp.EntityList
	var err error
	if isArmored(data) {
		list, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		list, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("not an OpenPGP public key: %v", err)
	case len(list) != 1:
		return nil, fmt.Errorf("holds %d keys, not one; export only the release key (gpg --export --armor FINGERPRINT)", len(list))
	case list[0].PrivateKey != nil:
		return nil, errors.New("holds a private key; give the public key only (gpg --export --armor FINGERPRINT)")
	}
	return &Key{entity: list[0], fingerprint: fingerprint(list[0].PrimaryKey.Fingerprint)}, nil
}

// Fingerprint is the key's fingerprint in upper-case hex, no spaces.
func (k *Key) Fingerprint() string { return k.fingerprint }

// Anthropic reports whether k is the embedded Anthropic key.
func (k *Key) Anthropic() bool { return k.fingerprint == AnthropicFingerprint }

// SignatureError is a signature that does not vouch for the manifest.
type SignatureError struct {
	Want   string // the trusted key's fingerprint
	Signer string // the key the signature names ("" if unreadable): a fingerprint, or "key ID X"
	Reason string
}

func (e *SignatureError) Error() string {
	signer := e.Signer
	if signer == "" {
		signer = "unknown"
	}
	return fmt.Sprintf("%s (expected key %s, signer %s)", e.Reason, e.Want, signer)
}

// Verify checks signature, a detached OpenPGP signature (armored or
// binary), over exactly the manifest bytes, made by k. Any error is a
// *SignatureError.
func (k *Key) Verify(manifest, signature []byte) error {
	fail := func(signer, format string, a ...any) error {
		return &SignatureError{Want: k.fingerprint, Signer: signer, Reason: fmt.Sprintf(format, a...)}
	}
	raw := signature
	if isArmored(signature) {
		block, err := armor.Decode(bytes.NewReader(signature))
		if err != nil || block.Type != openpgp.SignatureType {
			return fail("", "the signature is not an armored OpenPGP signature")
		}
		if raw, err = io.ReadAll(block.Body); err != nil {
			return fail("", "the signature's armor is damaged: %v", err)
		}
	}
	p, err := packet.Read(bytes.NewReader(raw))
	sig, ok := p.(*packet.Signature)
	if err != nil || !ok {
		return fail("", "the signature is not an OpenPGP signature")
	}
	signer := issuer(sig)
	_, err = openpgp.CheckDetachedSignature(openpgp.EntityList{k.entity}, bytes.NewReader(manifest), bytes.NewReader(raw), nil)
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return fail(signer, "the signature is by another key")
	case err != nil:
		return fail(signer, "the signature does not verify: the manifest changed after signing, or the signature is over other bytes (%v)", err)
	}
	return nil
}

// Verify checks a manifest's signature with Anthropic's embedded key.
func Verify(manifest, signature []byte) error {
	k, err := Anthropic()
	if err != nil {
		return err
	}
	return k.Verify(manifest, signature)
}

// issuer names the key a signature says made it: the issuer fingerprint
// subpacket when present (GnuPG 2.2 and later write it), else the key ID.
func issuer(sig *packet.Signature) string {
	if len(sig.IssuerFingerprint) > 0 {
		return fingerprint(sig.IssuerFingerprint)
	}
	if sig.IssuerKeyId != nil {
		return fmt.Sprintf("key ID %016X", *sig.IssuerKeyId)
	}
	return ""
}

func fingerprint(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }

func isArmored(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("-----BEGIN PGP "))
}
