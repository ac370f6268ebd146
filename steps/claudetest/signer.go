package claudetest

import (
	"bytes"
	"encoding/hex"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Signer is an OpenPGP key made for a test, standing in for Anthropic's
// release key (whose private half no test has).
type Signer struct{ entity *openpgp.Entity }

// NewSigner generates a key; EdDSA, since RSA 4096 takes seconds to make.
func NewSigner() *Signer {
	e, err := openpgp.NewEntity("ccboot test release key", "", "test@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		panic("claudetest: generate a signing key: " + err.Error())
	}
	return &Signer{entity: e}
}

// Sign is an armored detached signature over data, as Anthropic publishes.
func (s *Signer) Sign(data []byte) []byte {
	var buf bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&buf, s.entity, bytes.NewReader(data), nil); err != nil {
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
