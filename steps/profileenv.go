package steps

import (
	"context"
	"fmt"
	"strings"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/bedrock"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// profileEnvPath is the login-shell snippet that points Claude Code at Bedrock.
const profileEnvPath = "etc/profile.d/claude-bedrock.sh"

// ProfileEnv writes /etc/profile.d/claude-bedrock.sh.
type ProfileEnv struct{}

func (ProfileEnv) Name() string    { return "profile-env" }
func (ProfileEnv) Needs() []string { return nil }

// Scope implements bootstrap.Step: it holds the instance's Region.
func (ProfileEnv) Scope() bootstrap.Scope { return bootstrap.ScopeInstance }

func (s ProfileEnv) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	f, err := s.file(ctx, env)
	if err != nil {
		return d, err
	}
	if err := f.drift(&d); err != nil {
		return d, fmt.Errorf("profile-env: %w", err)
	}
	return d, nil
}

func (s ProfileEnv) Apply(ctx context.Context, env *bootstrap.Env) error {
	f, err := s.file(ctx, env)
	if err != nil {
		return err
	}
	if _, err := env.Sys.EnsureDir("etc/profile.d", fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("profile-env: %w", err)
	}
	if err := f.write(); err != nil {
		return fmt.Errorf("profile-env: %w", err)
	}
	return nil
}

func (ProfileEnv) file(ctx context.Context, env *bootstrap.Env) (managedFile, error) {
	region, err := env.Region(ctx)
	if err != nil {
		return managedFile{}, fmt.Errorf("profile-env: AWS_REGION: %w", err)
	}
	model, err := anthropicModel(env.Config.Model, region)
	if err != nil {
		return managedFile{}, fmt.Errorf("profile-env: %w", err)
	}
	c := *env.Config
	c.Model = model
	return managedFile{
		tree: env.Sys,
		name: profileEnvPath,
		want: renderProfileEnv(&c, region),
		spec: fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0},
	}, nil
}

// anthropicModel is ANTHROPIC_MODEL for region: the default model gets the
// inference profile prefix the Region can use (a us. profile is refused
// outside the US); a configured profile ID the Region cannot use is an
// error, found here rather than by every Claude Code request failing.
// IDs without a geographic prefix and ARNs are taken as given.
func anthropicModel(model, region string) (string, error) {
	if model == bedrock.DefaultModel {
		return bedrock.ModelFor(region, model), nil
	}
	if err := bedrock.Check(region, model); err != nil {
		return "", err
	}
	return model, nil
}

// AnthropicModel is ANTHROPIC_MODEL as the profile-env step writes it for
// region, for `ccboot doctor` to check.
func AnthropicModel(model, region string) (string, error) { return anthropicModel(model, region) }

// renderProfileEnv renders the script. Every value is single-quoted even
// though the config validated it: the file is sourced by every login shell,
// so quoting is what guarantees a value stays data.
func renderProfileEnv(c *bootstrap.Config, region string) []byte {
	vars := [][2]string{
		{"CLAUDE_CODE_USE_BEDROCK", "1"},
		{"ANTHROPIC_MODEL", c.Model},
		{"AWS_REGION", region},
	}
	if !c.ClaudeAutoUpdate {
		// Claude Code lives in a root-owned prefix: its self-updater would
		// fail with EACCES, and the pinned version is the point.
		vars = append(vars, [2]string{"DISABLE_AUTOUPDATER", "1"})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by ccboot; changes are overwritten by `ccboot repair`. Settings: %s\n", bootstrap.DefaultConfigPath)
	for _, v := range vars {
		fmt.Fprintf(&b, "export %s=%s\n", v[0], shellQuote(v[1]))
	}
	return []byte(b.String())
}
