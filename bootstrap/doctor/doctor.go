// Package doctor checks, live, the access chain Claude Code will use on this
// instance: the instance role's credentials from IMDS, the ReadOnly and
// Elevated tiers ccboot writes into the target user's ~/.aws/config, the
// configured model in the Region, and that the instance role alone cannot
// use Bedrock.
//
// doctor runs as root and the user may edit ~/.aws/config, so root's SDK
// never reads that file: the chain is built from ccboot's own values
// (IMDS credentials, then STS AssumeRole of ccboot's role ARNs with its
// session names), and a separate check compares the file, as text, with
// what ccboot wrote. Endpoints come from root's process environment only
// (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL_BEDROCK...), which is how tests
// point the SDK at loopback.
package doctor

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Tier is one profile of the chain as ccboot wrote it into ~/.aws/config.
type Tier struct {
	Label   string // "ReadOnly", "Elevated": for messages
	Profile string // profile name
	RoleARN string // the role the profile must resolve to
	Session string // its role_session_name
}

// Env is what the checks need; the command fills it from ccboot's config.
// A value ccboot could not compute comes with its error, which the checks
// that need the value report (the others still run).
type Env struct {
	Region    string
	RegionErr error
	// Model is ANTHROPIC_MODEL as the profile-env step writes it.
	Model    string
	ModelErr error
	ReadOnly Tier
	Elevated Tier
	RolesErr error // the role ARNs could not be configured or derived
	// AWSConfigErr: the target user's ~/.aws/config could not be read
	// (missing, a link, too large). AWSConfigVet: what the aws-config
	// step's vet found wrong in it, read as text (nil: exactly ccboot's
	// profiles). Only the aws-config-file check uses them: root's SDK never
	// reads the user's file.
	AWSConfigErr error
	AWSConfigVet error
	// IMDSEndpoint is ccboot's: "" means the SDK's default (or
	// AWS_EC2_METADATA_SERVICE_ENDPOINT), as for `ccboot run`.
	IMDSEndpoint string
	// Timeout bounds each check.
	Timeout time.Duration
	// Enforced: [tiers] mode = enforced. Elevated is then assumed with the
	// instance role, and the enforced checks run after the others, with
	// what they need in EnforcedEnv.
	Enforced bool
	EnforcedEnv
}

// DefaultTimeout bounds one check when Env.Timeout is zero.
const DefaultTimeout = 15 * time.Second

// Result is one check's outcome, one line of output.
type Result struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
	// Skipped: not run because a check it needs failed. It still counts
	// as not ok (exit 1), but the summary names the failures apart, so the
	// first broken link is the one to look at.
	Skipped bool `json:"skipped,omitempty"`
}

// Check is one live check. Needs names earlier checks it depends on: when
// one of them failed, this one is not run and says so.
type Check struct {
	Name  string
	Needs []string
	run   func(ctx context.Context, s *state) outcome
}

type outcome struct {
	ok          bool
	detail, fix string
}

func pass(format string, args ...any) outcome {
	return outcome{ok: true, detail: fmt.Sprintf(format, args...)}
}

func fail(detail, fix string) outcome { return outcome{detail: detail, fix: fix} }

// Check names.
const (
	IMDSCredentials = "imds-credentials"
	AWSConfigFile   = "aws-config-file"
	ReadOnlyProfile = "readonly-profile"
	ElevatedProfile = "elevated-profile"
	BedrockModel    = "bedrock-model"
	ReadOnlyInvoke  = "readonly-invoke"
	ElevatedInvoke  = "elevated-invoke"
	InstanceNoModel = "instance-role-no-bedrock"
)

// Checks returns the checks in the order they run.
func Checks() []Check {
	return []Check{
		{Name: IMDSCredentials, run: checkIMDS},
		{Name: AWSConfigFile, run: checkAWSConfigFile},
		{Name: ReadOnlyProfile, Needs: []string{IMDSCredentials}, run: func(ctx context.Context, s *state) outcome {
			return s.checkTier(ctx, &s.env.ReadOnly, s.instanceCfg, &s.readOnlyCfg)
		}},
		{Name: ElevatedProfile, Needs: []string{ReadOnlyProfile}, run: func(ctx context.Context, s *state) outcome {
			return s.checkTier(ctx, &s.env.Elevated, s.readOnlyCfg, &s.elevatedCfg)
		}},
		{Name: BedrockModel, Needs: []string{ReadOnlyProfile}, run: checkModel},
		{Name: ModelAccess, Needs: []string{BedrockModel}, run: checkModelAccess},
		{Name: ReadOnlyInvoke, Needs: []string{BedrockModel}, run: func(ctx context.Context, s *state) outcome { return s.checkInvoke(ctx, &s.env.ReadOnly, s.readOnlyCfg) }},
		{Name: ElevatedInvoke, Needs: []string{ElevatedProfile, BedrockModel}, run: func(ctx context.Context, s *state) outcome { return s.checkInvoke(ctx, &s.env.Elevated, s.elevatedCfg) }},
		{Name: InstanceNoModel, Needs: []string{IMDSCredentials}, run: checkInstanceNoBedrock},
	}
}

// Run runs every check in order and returns one result per check.
func Run(ctx context.Context, env *Env) []Result {
	checks := Checks()
	if env.Enforced {
		checks = append(checks, enforcedChecks()...)
	}
	return RunChecks(ctx, env, checks)
}

// RunChecks runs the given checks in order.
func RunChecks(ctx context.Context, env *Env, checks []Check) []Result {
	timeout := env.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	s := &state{env: env}
	passed := map[string]bool{}
	out := make([]Result, 0, len(checks))
	for _, c := range checks {
		var failedNeeds []string
		for _, n := range c.Needs {
			if !passed[n] {
				failedNeeds = append(failedNeeds, n)
			}
		}
		if len(failedNeeds) > 0 {
			out = append(out, Result{Name: c.Name, Skipped: true, Detail: "skipped: " + strings.Join(failedNeeds, ", ") + " failed"})
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		o := c.run(cctx, s)
		if !o.ok && cctx.Err() != nil && ctx.Err() == nil {
			o.detail = fmt.Sprintf("timed out after %s: %s", timeout, o.detail)
		}
		cancel()
		passed[c.Name] = o.ok
		out = append(out, Result{Name: c.Name, OK: o.ok, Detail: o.detail, Fix: o.fix})
	}
	return out
}

// AllOK reports whether every check passed.
func AllOK(rs []Result) bool {
	for _, r := range rs {
		if !r.OK {
			return false
		}
	}
	return len(rs) > 0
}

// setupErr is the detail line of a value ccboot could not compute: its
// error already says what to do, so the fix repeats the command to rerun.
func setupErr(err error) outcome {
	return fail(err.Error(), "fix the cause above, then run `sudo ccboot doctor` again")
}
