package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Tiers as a request names them.
const (
	ReadOnly = "readonly"
	Elevated = "elevated"
)

// DefaultSocket is where ccboot-broker.socket listens: a directory of its
// own (systemd makes it 0755 from DirectoryMode), not ccboot's lock
// directory /run/ccboot, which every run keeps at 0700 and so closed to the
// user the broker serves.
const DefaultSocket = "/run/ccboot-broker/broker.sock"

// MaxRequest bounds a request line; {"tier":"readonly"} is 19 bytes.
const MaxRequest = 256

// maxReply bounds what the client reads back (a session token is ~1 KB).
const maxReply = 16 << 10

// NotApproved is the refusal of Elevated without an approval for the
// caller's session; the AWS CLI and Claude Code show it as it is.
const NotApproved = "Elevated access is not approved: an admin runs `sudo ccboot elevate --for 30m`"

// Credentials is the credential_process output (Version 1).
type Credentials struct {
	Version         int
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string
	SessionToken    string
	Expiration      string // RFC 3339
}

func (c Credentials) expires() time.Time {
	t, _ := time.Parse(time.RFC3339, c.Expiration)
	return t
}

type request struct {
	Tier string `json:"tier"`
}

var (
	errTooLarge  = fmt.Errorf("ccboot broker: request over %d bytes refused; send one line {\"tier\":\"readonly\"} or {\"tier\":\"elevated\"}", MaxRequest)
	errMalformed = errors.New(`ccboot broker: malformed request; send one line {"tier":"readonly"} or {"tier":"elevated"} (ccboot credentials does)`)
)

// readRequest reads one line of at most MaxRequest bytes (the caller set
// the deadline) and parses it.
func readRequest(r io.Reader) (string, error) {
	buf := make([]byte, 0, MaxRequest+1)
	chunk := make([]byte, MaxRequest+1)
	for {
		n, err := r.Read(chunk[:MaxRequest+1-len(buf)])
		buf = append(buf, chunk[:n]...)
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[:i]
			break
		}
		if len(buf) > MaxRequest {
			return "", errTooLarge
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "", errors.New("ccboot broker: no complete request in time; send one line {\"tier\":\"readonly\"} right after connecting")
			}
			return "", fmt.Errorf("ccboot broker: reading the request: %w", err)
		}
	}
	var req request
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		return "", errMalformed
	}
	switch req.Tier {
	case ReadOnly, Elevated:
		return req.Tier, nil
	}
	return "", fmt.Errorf("ccboot broker: unknown tier %.40q; ask for readonly or elevated", req.Tier)
}

// oneLine makes an error a single printable line for the wire.
func oneLine(err error) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, err.Error())
	if len(s) > 1000 {
		s = s[:1000] + "..."
	}
	return s
}

// Refusal is the broker's own one-line answer to a request it refused.
type Refusal struct{ Line string }

func (r *Refusal) Error() string { return r.Line }

// Fetch asks the broker at socket for tier's credentials and returns the
// credential_process JSON (one line, validated), or the broker's one-line
// refusal as a *Refusal.
func Fetch(ctx context.Context, socket, tier string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the credential broker at %s: %v; an admin starts it: sudo systemctl start ccboot-broker.socket", socket, errors.Unwrap(err))
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	// A refusal may come before the request is read (a caller the broker
	// does not serve): a failed write still leaves the answer to read.
	_, werr := fmt.Fprintf(c, "{\"tier\":%q}\n", tier)
	reply, err := io.ReadAll(io.LimitReader(c, maxReply+1))
	if len(reply) == 0 {
		if err == nil {
			err = werr
		}
		if err == nil {
			return nil, fmt.Errorf("credential broker at %s closed the connection without an answer; see journalctl -u ccboot-broker", socket)
		}
		return nil, fmt.Errorf("credential broker at %s gave no answer: %v", socket, err)
	}
	if len(reply) > maxReply {
		return nil, fmt.Errorf("credential broker at %s answered more than %d bytes", socket, maxReply)
	}
	line := strings.TrimSpace(string(reply))
	if !strings.HasPrefix(line, "{") {
		return nil, &Refusal{oneLine(errors.New(line))}
	}
	var creds Credentials
	if err := json.Unmarshal([]byte(line), &creds); err != nil || creds.Version != 1 || creds.AccessKeyID == "" || creds.expires().IsZero() {
		return nil, fmt.Errorf("credential broker at %s answered something other than credential_process JSON", socket)
	}
	return []byte(line + "\n"), nil
}

func jsonLine(c Credentials) (string, error) {
	b, err := json.Marshal(c)
	return string(b), err
}

//lint:ignore ST1005 the message is shown to people as it is, a sentence.
var errNotApproved = errors.New(NotApproved)
