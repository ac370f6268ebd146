package claudetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Signer is an OpenPGP key made for a test, standing in for Anthropic's
// release key (whose private half no test has).
type Signer struct{ entity *openpgp.Entity }

// keyTime is when test keys are made; signatures are an hour younger.
var keyTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// NewSigner makes the key named by seed; EdDSA, since RSA 4096 takes
// seconds to make. The same seed gives the same key and the same
// signatures, so two test roots served by two servers hold the same bytes
// (the crash-consistency test compares whole trees).
func NewSigner(seed string) *Signer {
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Rand: rand.NewChaCha8(sha256.Sum256([]byte(seed))), Time: func() time.Time { return keyTime }}
	e, err := openpgp.NewEntity("ccboot test release key "+seed, "", "test@example.invalid", cfg)
	if err != nil {
		panic("claudetest: generate a signing key: " + err.Error())
	}
	return &Signer{entity: e}
}

// Sign is an armored detached signature over data, as Anthropic publishes.
func (s *Signer) Sign(data []byte) []byte {
	var buf bytes.Buffer
	cfg := &packet.Config{Time: func() time.Time { return keyTime.Add(time.Hour) }}
	if err := openpgp.ArmoredDetachSign(&buf, s.entity, bytes.NewReader(data), cfg); err != nil {
		panic("claudetest: sign: " + err.Error())
	}
	return buf.Bytes()
}

// PublicKey is the armored public key.
func (s *Signer) PublicKey() []byte {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err == nil {
		err = s.entity.Serialize(w)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		panic("claudetest: export the public key: " + err.Error())
	}
	return buf.Bytes()
}

// Fingerprint is the key's fingerprint as ccboot prints it.
func (s *Signer) Fingerprint() string {
	return strings.ToUpper(hex.EncodeToString(s.entity.PrimaryKey.Fingerprint))
}
