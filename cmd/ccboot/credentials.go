package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ccboot/ccboot/bootstrap/broker"
)

// brokerSocketEnv names the client's socket override (tests).
const brokerSocketEnv = "CCBOOT_BROKER_SOCKET"

// credentialsCmd is the credential_process of the enforced tiers' profiles:
// it asks the broker and prints its credential_process JSON, or the
// broker's one-line refusal on stderr with exit 1 (the AWS CLI and Claude
// Code show that line). It runs as the user and needs no privilege.
func credentialsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("credentials", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: ccboot credentials [flags] readonly|elevated\n\nPrint the tier's credentials from the credential broker as credential_process JSON\n(used by ~/.aws/config in enforced mode). Exit 0 ok, 1 refused or unreachable.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// CCBOOT_BROKER_SOCKET lets a test point the exact credential_process
	// line ~/.aws/config holds at a broker of its own. Only this client
	// reads it: it runs as the user, with the user's rights, and the
	// broker decides by SO_PEERCRED whichever socket it listens on.
	defaultSocket := broker.DefaultSocket
	if env := os.Getenv(brokerSocketEnv); env != "" {
		defaultSocket = env
	}
	socket := fs.String("socket", defaultSocket, "the broker's unix socket `path`; $"+brokerSocketEnv+" overrides the default")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this `duration`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 || (fs.Arg(0) != broker.ReadOnly && fs.Arg(0) != broker.Elevated) {
		fmt.Fprintln(stderr, "ccboot credentials: name one tier: ccboot credentials readonly, or ccboot credentials elevated")
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "ccboot credentials: --timeout %s: give a positive duration, e.g. 30s\n", *timeout)
		return exitUsage
	}
	out, err := broker.Fetch(ctx, *socket, fs.Arg(0), *timeout)
	var refusal *broker.Refusal
	switch {
	case errors.As(err, &refusal):
		fmt.Fprintln(stderr, refusal.Line)
		return exitFailed
	case err != nil:
		fmt.Fprintf(stderr, "ccboot credentials: %v\n", err)
		return exitFailed
	}
	_, _ = stdout.Write(out)
	return exitOK
}
