package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

func runCredentials(args ...string) result {
	var out, errb bytes.Buffer
	code := credentialsCmd(context.Background(), args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func TestCredentialsUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"admin"}, {"readonly", "elevated"}} {
		if r := runCredentials(args...); r.code != exitUsage || !strings.HasPrefix(r.stderr, "ccboot credentials: name one tier") {
			t.Errorf("%q: exit %d %q", args, r.code, r.stderr)
		}
	}
}

func TestCredentialsUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	r := runCredentials("--socket", sock, "readonly")
	if r.code != exitFailed || !strings.HasPrefix(r.stderr, "ccboot credentials: cannot reach the credential broker at "+sock) ||
		!strings.Contains(r.stderr, "sudo systemctl start ccboot-broker.socket") || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

type staticSTS struct{}

func (staticSTS) AssumeRole(_ context.Context, r broker.Role, d time.Duration) (broker.Credentials, error) {
	return broker.Credentials{Version: 1, AccessKeyID: "ASIASTATIC", SecretAccessKey: "s", SessionToken: "t",
		Expiration: time.Now().Add(d).UTC().Format(time.RFC3339)}, nil
}

// The client prints the broker's JSON as it is, and its refusal as it is
// (the exact text Claude Code shows) on stderr with exit 1.
func TestCredentialsThroughBroker(t *testing.T) {
	dir := t.TempDir()
	sys, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	srv, err := broker.New(broker.Config{UID: 0, User: "root-for-test",
		ReadOnly: broker.Role{ARN: "arn:aws:iam::111122223333:role/r"}, Elevated: broker.Role{ARN: "arn:aws:iam::111122223333:role/e"},
		STS: staticSTS{}, Approvals: broker.OpenApprovals(sys, "approvals", nil)})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "b.sock")
	l, err := broker.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	defer func() { cancel(); <-done }()

	r := runCredentials("--socket", sock, "readonly")
	var c map[string]any
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &c) != nil || c["Version"] != 1.0 || c["AccessKeyId"] != "ASIASTATIC" || c["Expiration"] == "" {
		t.Errorf("readonly: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runCredentials("--socket", sock, "elevated")
	if r.code != exitFailed || r.stderr != broker.NotApproved+"\n" || r.stdout != "" {
		t.Errorf("elevated: exit %d, stdout %q, stderr %q; want exactly %q", r.code, r.stdout, r.stderr, broker.NotApproved)
	}
}
