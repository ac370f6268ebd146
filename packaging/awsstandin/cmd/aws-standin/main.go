// Command aws-standin serves the loopback STS + Bedrock stand-in
// (packaging/awsstandin) for the e2e tests: it prints "listening on
// http://ADDR" when ready, appends each request as one JSON line to --log,
// and exits cleanly on SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ccboot/ccboot/packaging/awsstandin"
)

// multi is a repeatable K=V flag.
type multi map[string]string

func (m multi) String() string { return fmt.Sprint(map[string]string(m)) }

func (m multi) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	m[k] = val
	return nil
}

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if err := run(os.Args[1:], os.Stdout, sig); err != nil {
		fmt.Fprintln(os.Stderr, "aws-standin:", err)
		os.Exit(1)
	}
}

// run serves until stop receives.
func run(args []string, stdout io.Writer, stop <-chan os.Signal) error {
	fs := flag.NewFlagSet("aws-standin", flag.ContinueOnError)
	cfg := awsstandin.Config{Params: multi{}, InstanceKeys: multi{}}
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	logPath := fs.String("log", "", "file to append each request to, one JSON line each")
	fs.StringVar(&cfg.Template, "template", "", "CloudFormation template (packaging/cloudformation/ccboot.yaml)")
	fs.StringVar(&cfg.PoliciesDir, "policies", "", "directory of the AWS managed policy documents")
	fs.StringVar(&cfg.HarnessDir, "harness", "", "packaging/iam (harness.mjs and node_modules)")
	fs.StringVar(&cfg.StackName, "stack", "", "stack name")
	fs.StringVar(&cfg.Region, "region", "", "Region the stand-in serves")
	fs.StringVar(&cfg.Account, "account", "", "account ID")
	fs.StringVar(&cfg.Partition, "partition", "aws", "partition")
	fs.StringVar(&cfg.InstanceID, "instance-id", "", "the instance role session's name (default AEMM's i-1234567890abcdef0)")
	fs.Var(multi(cfg.Params), "param", "template parameter K=V (repeatable), e.g. TierMode=enforced; one the template lacks, or a value outside its AllowedValues, is an error")
	fs.Var(multi(cfg.InstanceKeys), "instance-key", "AKID=SECRET of the instance role's credentials (repeatable)")
	fs.BoolVar(&cfg.ModelAccess.NotSubscribed, "not-subscribed", false, "the account has no Marketplace agreement yet: the first invoke subscribes it if the caller may")
	fs.BoolVar(&cfg.ModelAccess.UseCaseMissing, "use-case-missing", false, "the account never submitted Anthropic's use-case form")
	fs.BoolVar(&cfg.ModelAccess.NotInRegion, "not-in-region", false, "models are not available in the Region")
	agentScript := fs.String("agent-script", "", "file of shell commands, one a line: Bedrock answers each conversation with a tool_use of Claude Code's Bash tool per command, then text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *agentScript != "" {
		var err error
		if cfg.AgentScript, err = awsstandin.ReadAgentScript(*agentScript); err != nil {
			return err
		}
	}
	if cfg.Template == "" || cfg.PoliciesDir == "" || cfg.HarnessDir == "" || *logPath == "" {
		return errors.New("--template, --policies, --harness and --log are required")
	}
	logf, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	var logMu sync.Mutex
	var logErr error
	cfg.OnRequest = func(r awsstandin.Request) {
		b, _ := json.Marshal(r)
		logMu.Lock()
		defer logMu.Unlock()
		if _, err := logf.Write(append(b, '\n')); err != nil && logErr == nil {
			logErr = err
		}
	}
	s, err := awsstandin.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		_ = s.Close()
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())

	select {
	case <-stop:
	case err := <-done:
		_ = s.Close()
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(ctx)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	logMu.Lock()
	defer logMu.Unlock()
	if err == nil {
		err = logErr
	}
	return err
}
