package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/steps"
)

// brokerCmd serves the credential broker (ccboot-broker.service). It reads
// the config like doctor: the target user, the Region and the role ARNs
// come from ccboot's own code, so the broker assumes exactly the roles the
// aws-config step names.
func brokerCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newFlags("broker", "Serve the credential broker of enforced tiers on the socket systemd passes\n(ccboot-broker.socket): ReadOnly credentials for the target user, Elevated only inside a session\n`ccboot elevate` approved. Log lines (JSON) go to stdout, the unit's journal.", stderr)
	socket := c.fs.String("socket", "", "listen on this unix socket `path` instead of the one systemd passes")
	c.readOnly = true // no log file: stdout is the journal
	if code, ok := c.parse(args); !ok {
		return code
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "ccboot broker: run it as root (it is ccboot-broker.service); the broker uses the instance role's credentials")
		return exitFailed
	}
	opts := c.options(stdout)
	opts.Journal = true
	// ProtectSystem=strict keeps /var/log read-only to the broker, so the
	// unit hands it ccboot's log open as stderr (StandardError=append:):
	// every issuance and refusal then reaches ccboot.log and the journal.
	// fd 2 itself, not the escaping writer around it: JSON lines are
	// escaped already.
	logFile := appendedLogFile(os.Stderr)
	if logFile != nil {
		opts.AppendLog = logFile
		stderr = io.Discard // the log line says it; plain text would break the JSON lines
	}
	s, code := openSession(opts, stderr)
	if s == nil {
		return code
	}
	defer s.Close()
	env := s.Env
	log := env.Log.Named("broker")
	fail := func(err error) int {
		log.Error("broker cannot start", zap.Error(err))
		printErr(stderr, "ccboot broker", err)
		return exitFailed
	}
	u, err := env.TargetUser()
	if err != nil {
		return fail(err)
	}
	if u.UID == 0 {
		return fail(fmt.Errorf("the target user is root; enforced tiers need an unprivileged user: set [ccboot] user"))
	}
	region, err := env.Region(ctx)
	if err != nil {
		return fail(err)
	}
	ro, el, err := steps.RoleARNs(ctx, env)
	if err != nil {
		return fail(err)
	}
	mount, err := broker.CgroupMount()
	if err != nil {
		return fail(fmt.Errorf("%w; Elevated needs it to tell sessions apart", err))
	}
	var l *net.UnixListener
	if *socket != "" {
		l, err = broker.Listen(*socket)
	} else {
		l, err = broker.SystemdListener()
	}
	if err != nil {
		return fail(err)
	}
	cfg := env.Config
	srv, err := broker.New(broker.Config{
		UID: u.UID, User: u.Name,
		ReadOnly: broker.Role{ARN: ro, SessionName: cfg.ReadOnlySessionName},
		Elevated: broker.Role{ARN: el, SessionName: cfg.ElevatedSessionName},
		// The unit's environment is root's: AWS_ENDPOINT_URL_STS (an STS
		// VPC endpoint, or a test's stand-in) is read from it like the SDK would.
		STS:         broker.NewSTS(region, os.Getenv("AWS_ENDPOINT_URL_STS"), cfg.IMDSEndpoint, broker.DefaultSTSTimeout),
		Approvals:   broker.OpenApprovals(env.Sys, broker.DefaultApprovalsDir, log.Named("approvals")),
		CgroupMount: mount,
		Log:         log,
	})
	if err != nil {
		l.Close()
		return fail(err)
	}
	log.Info("serving", zap.String("socket", l.Addr().String()), zap.String("user", u.Name), zap.Int("uid", u.UID),
		zap.String("readonly_role", ro), zap.String("elevated_role", el), zap.Bool("ccboot_log", logFile != nil))
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	if err := srv.Serve(ctx, l); err != nil {
		return fail(err)
	}
	return exitOK
}

// appendedLogFile is stderr when it is a regular file opened for appending
// (systemd's StandardError=append:), else nil: a terminal or the journal's
// stream gets the usual one-line errors instead.
func appendedLogFile(f *os.File) *os.File {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil || flags&unix.O_APPEND == 0 {
		return nil
	}
	return f
}
