package releasesig

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// newSigner generates a throwaway signing key (EdDSA: fast to make).
func newSigner(t *testing.T) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity("ccboot test release key", "", "test@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func publicArmored(t *testing.T, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sign(t *testing.T, e *openpgp.Entity, msg []byte, armored bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	if armored {
		err = openpgp.ArmoredDetachSign(&buf, e, bytes.NewReader(msg), nil)
	} else {
		err = openpgp.DetachSign(&buf, e, bytes.NewReader(msg), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func trusted(t *testing.T, e *openpgp.Entity) *Key {
	t.Helper()
	k, err := Parse(publicArmored(t, e))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const manifest = `{"version":"2.1.332","platforms":{"linux-x64":{"checksum":"` +
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + `","size":1}}}`

func TestEmbeddedKeyIsPinned(t *testing.T) {
	k, err := Anthropic()
	if err != nil {
		t.Fatal(err)
	}
	if k.Fingerprint() != AnthropicFingerprint || !k.Anthropic() {
		t.Errorf("embedded key fingerprint %s, want %s", k.Fingerprint(), AnthropicFingerprint)
	}
}

// The pin is what makes the embedded file trustworthy: the same load with
// another expected fingerprint, or another key under the real pin, fails.
func TestPinnedFingerprintMismatchIsRefused(t *testing.T) {
	if _, err := pinned(anthropicKey, "0000000000000000000000000000000000000000"); err == nil || !strings.Contains(err.Error(), AnthropicFingerprint) {
		t.Errorf("embedded key under another pin: err = %v, want a refusal naming its fingerprint", err)
	}
	other := newSigner(t)
	_, err := pinned(publicArmored(t, other), AnthropicFingerprint)
	if err == nil || !strings.Contains(err.Error(), "not the pinned "+AnthropicFingerprint) {
		t.Errorf("another key under the Anthropic pin: err = %v, want refused", err)
	}
}

func TestVerify(t *testing.T) {
	signer := newSigner(t)
	key := trusted(t, signer)
	other := newSigner(t)
	otherFpr := trusted(t, other).Fingerprint()
	msg := []byte(manifest)
	tampered := bytes.Replace(msg, []byte(`"size":1`), []byte(`"size":2`), 1)
	tests := []struct {
		name       string
		manifest   []byte
		sig        []byte
		wantSigner string // "" means it must verify
		wantReason string
	}{
		{"good armored signature", msg, sign(t, signer, msg, true), "", ""},
		{"good binary signature", msg, sign(t, signer, msg, false), "", ""},
		{"signature by another key", msg, sign(t, other, msg, true), otherFpr, "by another key"},
		{"manifest changed after signing", tampered, sign(t, signer, msg, false), key.Fingerprint(), "does not verify"},
		{"signature over other bytes", msg, sign(t, signer, []byte(strings.Replace(manifest, "2.1.332", "2.1.331", 1)), true), key.Fingerprint(), "does not verify"},
		{"empty signature (a missing file served as 200)", msg, nil, "", "not an OpenPGP signature"},
		{"an HTML error page", msg, []byte("<html>Not Found</html>"), "", "not an OpenPGP signature"},
		{"a public key instead of a signature", msg, publicArmored(t, signer), "", "not an armored OpenPGP signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := key.Verify(tt.manifest, tt.sig)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Verify = %v, want ok", err)
				}
				return
			}
			var se *SignatureError
			if !errors.As(err, &se) {
				t.Fatalf("Verify = %v, want a *SignatureError", err)
			}
			if se.Want != key.Fingerprint() || se.Signer != tt.wantSigner || !strings.Contains(se.Reason, tt.wantReason) {
				t.Errorf("Verify = %+v, want signer %q, reason containing %q", se, tt.wantSigner, tt.wantReason)
			}
			if !strings.Contains(err.Error(), key.Fingerprint()) {
				t.Errorf("error %q does not name the expected fingerprint", err)
			}
		})
	}
}

// A signature made with a test key never passes the production check.
func TestVerifyWithAnthropicKeyRefusesOtherKeys(t *testing.T) {
	signer := newSigner(t)
	msg := []byte(manifest)
	err := Verify(msg, sign(t, signer, msg, true))
	var se *SignatureError
	if !errors.As(err, &se) || se.Want != AnthropicFingerprint || se.Signer != trusted(t, signer).Fingerprint() {
		t.Fatalf("Verify = %v, want refused naming both fingerprints", err)
	}
}

func TestParseRefuses(t *testing.T) {
	a, b := newSigner(t), newSigner(t)
	var priv bytes.Buffer
	if err := a.SerializePrivate(&priv, nil); err != nil {
		t.Fatal(err)
	}
	var two bytes.Buffer // one armor block, two keys
	for _, e := range []*openpgp.Entity{a, b} {
		if err := e.Serialize(&two); err != nil {
			t.Fatal(err)
		}
	}
	for name, tt := range map[string]struct {
		data []byte
		want string
	}{
		"garbage":     {[]byte("not a key"), "not an OpenPGP public key"},
		"private key": {priv.Bytes(), "private key"},
		"two keys":    {two.Bytes(), "holds 2 keys"},
	} {
		if _, err := Parse(tt.data); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Parse = %v, want %q", name, err, tt.want)
		}
	}
}
