package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/doctor"
	"github.com/ccboot/ccboot/bootstrap/metadata"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
	"github.com/ccboot/ccboot/steps"
)

// doctorCmd runs the live checks of the access chain (bootstrap/doctor).
// It reads the config like plan and status and writes nothing.
func doctorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newFlags("doctor", "Check live what Claude Code needs: instance credentials from IMDS, the user's ~/.aws/config\nagainst what ccboot wrote (read as text), ccboot's ReadOnly and Elevated tiers (via STS), the model\nin the Region and each tier's right to invoke it, and that the instance role alone cannot use\nBedrock. One line per check; exit 0 all ok, 1 a check failed.", stderr)
	format := c.fs.String("format", "text", "output `format`: text or json")
	timeout := c.fs.Duration("timeout", doctor.DefaultTimeout, "give up on one check after this `duration`")
	c.readOnly = true
	if code, ok := c.parse(args); !ok {
		return code
	}
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "ccboot doctor: --format %q: use text or json\n", *format)
		return exitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "ccboot doctor: --timeout %s: give a positive duration, e.g. 15s\n", *timeout)
		return exitUsage
	}
	// The operator's shell may have IMDS turned off for its own tools; the
	// target user's shell, which doctor stands in for, does not inherit
	// that. ccboot's own IMDS client (the Region, the role ARNs) reads the
	// variable, so it goes for this process; the checks enable IMDS
	// explicitly anyway.
	_ = os.Unsetenv("AWS_EC2_METADATA_DISABLED")
	s, code := openSession(c.options(stdout), stderr)
	if s == nil {
		return code
	}
	defer s.Close()
	// IMDS answers within the check's timeout or the check fails: doctor is
	// run by a person or SSM on a booted instance, not at early boot.
	s.Env.Meta = metadata.NewIMDS(s.Env.Config.IMDSEndpoint, *timeout, s.Env.Log.Named("imds"))
	results := doctor.Run(ctx, doctorEnv(ctx, s.Env, *timeout))
	recordDoctor(ctx, s.Env, results, stderr)
	if *format == "json" {
		_ = bootstrap.WriteJSON(stdout, results)
	} else {
		printDoctor(stdout, results)
	}
	if !doctor.AllOK(results) {
		return exitFailed
	}
	return exitOK
}

// doctorEnv computes what ccboot wrote, with ccboot's own code: the Region,
// ANTHROPIC_MODEL (profile-env), the role ARNs (aws-config), and reads the
// user's ~/.aws/config under the root without following links, bounded,
// for the aws-config step's vet.
func doctorEnv(ctx context.Context, env *bootstrap.Env, timeout time.Duration) *doctor.Env {
	cfg := env.Config
	d := &doctor.Env{
		ReadOnly:     doctor.Tier{Label: "ReadOnly", Profile: cfg.ReadOnlyProfile, Session: cfg.ReadOnlySessionName},
		Elevated:     doctor.Tier{Label: "Elevated", Profile: cfg.ElevatedProfile, Session: cfg.ElevatedSessionName},
		IMDSEndpoint: cfg.IMDSEndpoint,
		Timeout:      timeout,
		Enforced:     cfg.Enforced(),
	}
	if d.Enforced {
		d.EnforcedEnv = enforcedEnv(env)
	}
	d.Region, d.RegionErr = env.Region(ctx)
	if d.RegionErr == nil {
		d.Model, d.ModelErr = steps.AnthropicModel(cfg.Model, d.Region)
		d.ReadOnly.RoleARN, d.Elevated.RoleARN, d.RolesErr = steps.RoleARNs(ctx, env)
	} else {
		d.ModelErr = d.RegionErr
	}
	home, u, err := env.Home()
	if err != nil {
		d.AWSConfigErr = err
		return d
	}
	home = home.Guarded()
	data, err := home.ReadFile(".aws/config")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.AWSConfigErr = fmt.Errorf("%s does not exist (the aws-config step writes it for %s)", home.Path(".aws/config"), u.Name)
	case err != nil:
		d.AWSConfigErr = err
	default:
		// Text only: the step that writes the file compares it with what
		// it wrote; root's SDK never loads it.
		d.AWSConfigVet = steps.VetAWSConfigFile(ctx, env, data)
	}
	return d
}

// enforcedEnv is what the enforced checks need, from the root's own
// databases: the user and its groups, the sockets' places, the approvals.
// The probe is this very binary (/proc/self/exe), never a path from the
// user's side.
func enforcedEnv(env *bootstrap.Env) doctor.EnforcedEnv {
	e := doctor.EnforcedEnv{
		Probe:        []string{"/proc/self/exe", doctor.ProbeCommand},
		BrokerSocket: env.Sys.Path(strings.TrimPrefix(broker.DefaultSocket, "/")),
		DockerSocket: env.Sys.Path("var/run/docker.sock"),
		Run:          inRoot{env},
	}
	e.User, e.UserErr = env.TargetUser()
	if e.UserErr == nil {
		e.Groups, e.UserErr = sysuser.GroupsOf(env.Sys, e.User)
	}
	store := broker.OpenApprovals(env.Sys, broker.DefaultApprovalsDir, env.Log)
	e.Approvals, e.ApprovalsErr = store.Active(time.Now())
	return e
}

// inRoot runs a command against the root (chroot under --root), so sudo is
// the root's own, as for the steps.
type inRoot struct{ env *bootstrap.Env }

func (r inRoot) Run(ctx context.Context, c runner.Cmd) (runner.Result, error) {
	return r.env.Run.Run(ctx, r.env.InRoot(c))
}

// printDoctor writes one line per check: name, ok, FAIL or skip, the detail
// and, on failure, the fix.
func printDoctor(w io.Writer, results []doctor.Result) {
	failed, skipped := 0, 0
	for _, r := range results {
		mark := "ok"
		switch {
		case r.Skipped:
			mark = "skip"
			skipped++
		case !r.OK:
			mark = "FAIL"
			failed++
		}
		line := fmt.Sprintf("%-24s %-4s  %s", r.Name, mark, r.Detail)
		if r.Fix != "" {
			line += "; fix: " + r.Fix
		}
		fmt.Fprintln(w, bootstrap.Printable(line))
	}
	switch {
	case failed == 0 && skipped == 0:
		fmt.Fprintf(w, "doctor: all %d checks passed\n", len(results))
	case skipped == 0:
		fmt.Fprintf(w, "doctor: %d of %d checks failed\n", failed, len(results))
	default:
		fmt.Fprintf(w, "doctor: %d of %d checks failed, %d skipped because of them\n", failed, len(results), skipped)
	}
}
