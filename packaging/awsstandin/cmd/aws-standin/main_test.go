package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ccboot/ccboot/packaging/awsstandin"
	"github.com/ccboot/ccboot/packaging/cfn"
)

// The command serves until SIGTERM, announces its address, and logs each
// request as a JSON line.
func TestCommand(t *testing.T) {
	policies, err := cfn.ManagedPoliciesDir("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "requests.jsonl")
	pr, pw := io.Pipe()
	stop := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"--listen", "127.0.0.1:0", "--template", "../../../cloudformation/ccboot.yaml", "--policies", policies,
			"--harness", "../../../iam", "--stack", "s1", "--region", "eu-west-1", "--account", "111122223333", "--partition", "aws",
			"--param", "ModelId=eu.anthropic.claude-sonnet-4-6", "--instance-key", "AKIDINSTANCE=secret", "--log", logPath}, pw, stop)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no address announced: %v (run: %v)", err, <-done)
	}
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("announced %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	cfg := aws.Config{Region: "eu-west-1", Retryer: func() aws.Retryer { return aws.NopRetryer{} },
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDINSTANCE", SecretAccessKey: "secret"}, nil
		})}
	out, err := sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(url) }).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil || *out.Arn != "arn:aws:sts::111122223333:assumed-role/claudecode-ec2-s1/i-1234567890abcdef0" {
		t.Fatalf("GetCallerIdentity: %v %v", out, err)
	}
	stop <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after SIGTERM")
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var r awsstandin.Request
	if err := json.Unmarshal(b, &r); err != nil || strings.Count(string(b), "\n") != 1 ||
		r.Action != "sts:GetCallerIdentity" || r.AccessKey != "AKIDINSTANCE" || r.Status != 200 {
		t.Errorf("log %q: %+v %v", b, r, err)
	}
}

// --param reaches the template's resolution: TierMode=enforced is how an
// e2e serves the enforced stack, and a misspelt value is refused before
// anything listens.
func TestCommandParamIsChecked(t *testing.T) {
	policies, err := cfn.ManagedPoliciesDir("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	err = run([]string{"--listen", "127.0.0.1:0", "--template", "../../../cloudformation/ccboot.yaml", "--policies", policies,
		"--harness", "../../../iam", "--stack", "s1", "--region", "eu-west-1", "--account", "111122223333",
		"--param", "TierMode=enforcd", "--log", filepath.Join(t.TempDir(), "requests.jsonl")}, io.Discard, make(chan os.Signal))
	if err == nil || !strings.Contains(err.Error(), `TierMode = "enforcd" is not one of its AllowedValues`) {
		t.Errorf("run with --param TierMode=enforcd: %v", err)
	}
}

// --agent-script is read before anything listens: a script without a
// command is refused with its fix.
func TestCommandAgentScriptIsChecked(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("# no command\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run([]string{"--template", "unused.yaml", "--policies", dir, "--harness", dir, "--stack", "s1", "--region", "eu-west-1",
		"--account", "111122223333", "--agent-script", script, "--log", filepath.Join(dir, "requests.jsonl")}, io.Discard, make(chan os.Signal))
	if err == nil || !strings.Contains(err.Error(), "holds no command; fix: write one shell command per line") {
		t.Errorf("run with an empty --agent-script: %v", err)
	}
}
