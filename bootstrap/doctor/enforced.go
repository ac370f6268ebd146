package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// The checks of [tiers] mode = enforced: each proves one invariant live,
// from the target user's side where it is about the user.
const (
	UserNoIMDS            = "user-no-imds"
	UserNoRoot            = "user-no-root"
	BrokerReadOnly        = "broker-readonly"
	BrokerElevatedRefused = "broker-elevated-refused"
	ReadOnlyNoElevated    = "readonly-no-elevated"
)

// DefaultIMDSAddr is where the instance's IMDS listens (IPv4).
const DefaultIMDSAddr = "169.254.169.254:80"

// EnforcedEnv is what the enforced checks need, filled by the command
// from ccboot's config and the root's databases, never from the user.
type EnforcedEnv struct {
	User    sysuser.User
	Groups  []sysuser.Group // the user's groups per /etc/group
	UserErr error
	// Probe is the argv that runs ProbeMain in a child (ccboot's own
	// binary: /proc/self/exe and the hidden ProbeCommand). The child runs
	// with the user's uid and groups only; nothing the user wrote is run.
	Probe        []string
	BrokerSocket string
	DockerSocket string
	// Run runs sudo -n -l -U USER (as root, with LC_ALL=C).
	Run runner.Runner
	// Approvals are the active approval windows (ApprovalsErr: unreadable).
	Approvals    []broker.Approval
	ApprovalsErr error
}

// enforcedChecks are appended to Checks() when the mode is enforced.
func enforcedChecks() []Check {
	return []Check{
		{Name: ReadOnlyNoElevated, Needs: []string{ReadOnlyProfile}, run: checkReadOnlyNoElevated},
		{Name: UserNoIMDS, run: checkUserNoIMDS},
		{Name: UserNoRoot, run: checkUserNoRoot},
		{Name: BrokerReadOnly, run: checkBrokerReadOnly},
		{Name: BrokerElevatedRefused, run: checkBrokerElevatedRefused},
	}
}

// imdsAddr is the host:port the user must not reach: ccboot's configured
// endpoint, else the instance's.
func imdsAddr(endpoint string) (string, error) {
	if endpoint == "" {
		return DefaultIMDSAddr, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("[ccboot] imds_endpoint %q is not a URL like http://169.254.169.254", endpoint)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// userLabel is "ec2-user (uid 1000)".
func userLabel(u sysuser.User) string { return fmt.Sprintf("%s (uid %d)", u.Name, u.UID) }

func (s *state) userReady() (outcome, bool) {
	e := &s.env.EnforcedEnv
	switch {
	case e.UserErr != nil:
		return setupErr(e.UserErr), false
	case e.User.UID == 0:
		return fail(fmt.Sprintf("the target user %s is root", e.User.Name),
			"set [ccboot] user to the unprivileged user Claude Code runs as; enforced tiers cannot hold for root"), false
	case len(e.Probe) == 0:
		return fail("doctor cannot start a process as the user (no probe command)", "run doctor as the ccboot binary: `sudo ccboot doctor`"), false
	}
	return outcome{}, true
}

func checkUserNoIMDS(ctx context.Context, s *state) outcome {
	if o, ok := s.userReady(); !ok {
		return o
	}
	addr, err := imdsAddr(s.env.IMDSEndpoint)
	if err != nil {
		return setupErr(err)
	}
	u := s.env.User
	// Root first: if root cannot connect either, IMDS is down, and a
	// refused user proves nothing about the filter.
	if err := rootDial(ctx, addr); err != nil {
		return fail(fmt.Sprintf("IMDS at %s does not answer root either (%s), so the filter cannot be told from an outage", addr, oneLine(err)),
			"enable the instance's metadata service (HttpEndpoint enabled), or set [ccboot] imds_endpoint to where it is, then run `sudo ccboot doctor` again")
	}
	addrs := []string{addr}
	// IMDS over IPv6 is on where root reaches it (Nitro, HttpProtocolIpv6
	// enabled); the filter must cover it too.
	if s.env.IMDSEndpoint == "" && rootDial(ctx, DefaultIMDSAddr6) == nil {
		addrs = append(addrs, DefaultIMDSAddr6)
	}
	var refused []string
	for _, a := range addrs {
		rep, err := s.asUser(ctx, "connect", "tcp", a)
		if err != nil {
			return fail(err.Error(), "check that "+u.Name+" can run ccboot's binary (its mode must be 0755)")
		}
		if rep.Connected {
			return fail(fmt.Sprintf("%s reaches IMDS at %s, so it can take the instance role's credentials: the packet filter is not in place", userLabel(u), a),
				"run `sudo ccboot repair --only imds-filter`")
		}
		refused = append(refused, fmt.Sprintf("%s (%s)", a, rep.Error))
	}
	return pass("%s cannot reach IMDS at %s; root can", userLabel(u), strings.Join(refused, " or "))
}

// DefaultIMDSAddr6 is IMDS over IPv6, where the instance has it on.
const DefaultIMDSAddr6 = "[fd00:ec2::254]:80"

// rootDial is a bounded TCP connect as root (this process).
func rootDial(ctx context.Context, addr string) error {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, probeDialTimeout)
	defer cancel()
	c, err := d.DialContext(dctx, "tcp", addr)
	if err == nil {
		c.Close()
	}
	return err
}

func checkUserNoRoot(ctx context.Context, s *state) outcome {
	if o, ok := s.userReady(); !ok {
		return o
	}
	e := &s.env.EnforcedEnv
	u := e.User
	const repair = "run `sudo ccboot repair --only user-privileges`"
	for _, g := range e.Groups {
		for _, name := range sysuser.RootGroups {
			if g.Name == name {
				return fail(fmt.Sprintf("%s is in group %s, which grants root", userLabel(u), name), repair)
			}
		}
	}
	if o, ok := s.noSudo(ctx); !ok {
		return o
	}
	docker := "no root docker socket"
	if fi, err := os.Stat(e.DockerSocket); err == nil {
		rep, err := s.asUser(ctx, "connect", "unix", e.DockerSocket)
		if err != nil {
			return fail(err.Error(), "check that "+u.Name+" can run ccboot's binary (its mode must be 0755)")
		}
		mode := fi.Mode().Perm()
		if rep.Connected {
			fix := repair + " (the user must not be in docker)"
			if mode&0o002 != 0 {
				fix = fmt.Sprintf("run `sudo chmod 0660 %s` and set SocketMode=0660 in docker.socket: anyone can drive the root daemon", e.DockerSocket)
			}
			return fail(fmt.Sprintf("%s can connect to the root docker socket %s (mode %04o), which runs containers as root", userLabel(u), e.DockerSocket, mode), fix)
		}
		docker = fmt.Sprintf("cannot connect to the root docker socket %s (%s)", e.DockerSocket, rep.Error)
	}
	return pass("%s: in no root-granting group, no sudo rule, %s", userLabel(u), docker)
}

// noSudo asks sudo itself (it reads every sudoers source), non-interactive.
func (s *state) noSudo(ctx context.Context) (outcome, bool) {
	e := &s.env.EnforcedEnv
	name := e.User.Name
	if e.Run == nil {
		return fail("doctor has no command runner for sudo", "run doctor as the ccboot binary: `sudo ccboot doctor`"), false
	}
	res, err := e.Run.Run(ctx, runner.Cmd{Name: "sudo", Args: []string{"-n", "-l", "-U", name}, Env: []string{"LC_ALL=C"}})
	var exit *runner.ExitError
	if errors.As(err, &exit) && exit.Code == 127 {
		return outcome{}, true // chroot: the root has no sudo
	}
	if err != nil && !errors.As(err, &exit) {
		if strings.Contains(err.Error(), "not found") {
			return outcome{}, true // no sudo at all: nothing grants root through it
		}
		return fail(fmt.Sprintf("sudo -n -l -U %s: %s", name, oneLine(err)), "check that sudo runs for root, then run `sudo ccboot doctor` again"), false
	}
	switch list, ok := sysuser.ParseSudoList(string(res.Stdout)); {
	case ok && list.None:
		return outcome{}, true
	case ok:
		rules := list.Rules
		if len(rules) > 200 {
			rules = rules[:200] + "..."
		}
		return fail(fmt.Sprintf("%s has sudo rules (sudo -l -U %s lists %s)", userLabel(e.User), name, rules),
			"remove them from /etc/sudoers or /etc/sudoers.d with visudo, then run `sudo ccboot repair --only user-privileges`"), false
	}
	return fail(fmt.Sprintf("cannot tell whether %s may use sudo: sudo -n -l -U %s printed %q", name, name, runner.Tail(res.Stdout, 2)),
		"run `sudo -l -U "+name+"` to see why, then `sudo ccboot doctor` again"), false
}

func checkBrokerReadOnly(ctx context.Context, s *state) outcome {
	if o, ok := s.userReady(); !ok {
		return o
	}
	if s.env.RegionErr != nil {
		return setupErr(s.env.RegionErr)
	}
	if s.env.RolesErr != nil {
		return setupErr(s.env.RolesErr)
	}
	u := s.env.User
	rep, err := s.asUser(ctx, "fetch", s.env.BrokerSocket, broker.ReadOnly)
	switch {
	case err != nil:
		return fail(err.Error(), "check that "+u.Name+" can run ccboot's binary (its mode must be 0755)")
	case rep.Refusal != "":
		return fail(fmt.Sprintf("the broker refuses ReadOnly to %s: %s", userLabel(u), rep.Refusal),
			"see why in `journalctl -u ccboot-broker`; [ccboot] user must be the user the broker serves (`sudo systemctl restart ccboot-broker.socket` after changing it)")
	case rep.Error != "":
		return fail(fmt.Sprintf("%s cannot get ReadOnly from the broker: %s", userLabel(u), rep.Error), s.brokerFix(rep.Error))
	case rep.Credentials == nil:
		return fail("the broker answered neither credentials nor a refusal", "see `journalctl -u ccboot-broker`")
	}
	want, err := assumedRoleARN(s.env.ReadOnly.RoleARN, s.env.ReadOnly.Session)
	if err != nil {
		return setupErr(err)
	}
	got, err := s.callerARN(ctx, rep.Credentials)
	if err != nil {
		return fail("GetCallerIdentity with the broker's ReadOnly credentials: "+describe(err), "see `journalctl -u ccboot-broker`: the broker's credentials do not work")
	}
	if got != want {
		return fail(fmt.Sprintf("the broker's ReadOnly credentials for %s are %s, want %s", userLabel(u), got, want),
			"restart the broker so it reads ccboot's config again: `sudo systemctl restart ccboot-broker.service`")
	}
	return pass("%s gets %s from the broker (credentials not shown)", userLabel(u), got)
}

func checkBrokerElevatedRefused(ctx context.Context, s *state) outcome {
	if o, ok := s.userReady(); !ok {
		return o
	}
	e := &s.env.EnforcedEnv
	u := e.User
	rep, err := s.asUser(ctx, "fetch", e.BrokerSocket, broker.Elevated)
	switch {
	case err != nil:
		return fail(err.Error(), "check that "+u.Name+" can run ccboot's binary (its mode must be 0755)")
	case rep.Credentials != nil:
		return fail(fmt.Sprintf("the broker gave Elevated to a process of %s outside any approved session", userLabel(u)),
			"end it now with `sudo ccboot elevate --revoke`, restart the broker (`sudo systemctl restart ccboot-broker.service`) and see `journalctl -u ccboot-broker`")
	case rep.Error != "":
		return fail(fmt.Sprintf("%s cannot reach the broker: %s", userLabel(u), rep.Error), s.brokerFix(rep.Error))
	case rep.Refusal != broker.NotApproved:
		return fail(fmt.Sprintf("the broker refuses Elevated to %s, but not for want of an approval: %s", userLabel(u), rep.Refusal),
			"see `journalctl -u ccboot-broker`")
	}
	if e.ApprovalsErr != nil {
		return fail("Elevated is refused outside a session, but the approvals cannot be read: "+oneLine(e.ApprovalsErr), "fix the cause above")
	}
	if len(e.Approvals) > 0 {
		var open []string
		for _, a := range e.Approvals {
			open = append(open, fmt.Sprintf("approved until %s for unit %s", a.Until.Local().Format("15:04"), a.Unit))
		}
		return pass("%s; outside it %s is refused: %q", strings.Join(open, ", "), userLabel(u), rep.Refusal)
	}
	return pass("no approval is active and the broker refuses Elevated to %s: %q", userLabel(u), rep.Refusal)
}

// brokerFix says how to let the user reach the broker. A directory on the
// way the user cannot search (a /run/ccboot-broker someone made 0700)
// shows as "permission denied" with the socket's mode 0666.
func (s *state) brokerFix(probeErr string) string {
	const start = "run `sudo ccboot repair --only credential-broker` (it installs and starts the broker's units), then `sudo systemctl start ccboot-broker.socket`"
	if !strings.Contains(probeErr, "permission denied") {
		return start
	}
	dir := filepath.Dir(s.env.BrokerSocket)
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm()&0o001 != 0 {
		return "the broker's socket " + s.env.BrokerSocket + " must be mode 0666 in directories everyone may search; " + start
	}
	return fmt.Sprintf("%s is mode %04o, so %s cannot reach the broker's socket in it: `sudo chmod 0755 %s`", dir, fi.Mode().Perm(), s.env.User.Name, dir)
}

// checkReadOnlyNoElevated: in enforced mode IAM must deny ReadOnly the
// assumption of Elevated, or the agent needs no broker to escalate.
func checkReadOnlyNoElevated(ctx context.Context, s *state) outcome {
	el := &s.env.Elevated
	p := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(s.readOnlyCfg), el.RoleARN,
		func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = el.Session })
	_, err := p.Retrieve(ctx)
	if err == nil {
		return fail(fmt.Sprintf("the ReadOnly role %s may assume Elevated %s: an agent with ReadOnly escalates without the broker", s.env.ReadOnly.RoleARN, el.RoleARN),
			"update the stack with TierMode=enforced: Elevated must trust only the instance role, and ReadOnly must not be allowed sts:AssumeRole on it (packaging/cloudformation/ccboot.yaml)")
	}
	if _, code := apiError(err); isDenied(code) {
		return pass("IAM denies ReadOnly the assumption of Elevated (%s)", code)
	}
	fix := "check the error above: the check needs STS's answer"
	if unreachable(err) {
		fix = "cannot reach STS: give the instance a route to it; AWS_ENDPOINT_URL_STS overrides the endpoint"
	}
	return fail("cannot tell whether ReadOnly may assume Elevated: "+describe(err), fix)
}

// callerARN asks STS who the credentials are, with root's SDK settings.
func (s *state) callerARN(ctx context.Context, c *broker.Credentials) (string, error) {
	cfg, err := s.loadConfig(ctx)
	if err != nil {
		return "", err
	}
	cfg.Credentials = credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.Arn), nil
}

// probeDialTimeout bounds one connect: the filter answers with a reset at
// once, and a dropped packet must not hold doctor for long.
const probeDialTimeout = 3 * time.Second

// maxProbeReply bounds what root reads from the child (credentials are ~2 KB).
const maxProbeReply = 64 << 10

// asUser runs the probe as the user: its uid, its primary gid and exactly
// its groups from /etc/group (root's supplementary groups are dropped),
// a session of its own, a minimal environment, and root's probe argv.
func (s *state) asUser(ctx context.Context, args ...string) (probeReply, error) {
	e := &s.env.EnforcedEnv
	gids := make([]uint32, 0, len(e.Groups))
	for _, g := range e.Groups {
		gids = append(gids, uint32(g.GID))
	}
	attr := &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(e.User.UID), Gid: uint32(e.User.GID), Groups: gids},
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL,
	}
	return runProbe(ctx, e.Probe, attr, args)
}
