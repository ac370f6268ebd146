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
	vars, err := claudeCodeEnv(ctx, env)
	if err != nil {
		return managedFile{}, fmt.Errorf("profile-env: %w", err)
	}
	return managedFile{
		tree: env.Sys,
		name: profileEnvPath,
		want: renderProfileEnv(vars),
		spec: fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0},
	}, nil
}

// envVar is one variable of Claude Code's environment.
type envVar struct{ Name, Value string }

// claudeCodeEnv is the one computation of what Claude Code on Bedrock
// needs in its environment, in the order it is written: profile-env
// exports it to login shells (and the AWS CLI, which reads AWS_REGION),
// claude-settings puts it in the managed settings' env block, which
// Claude Code applies from any kind of shell. AWS_PROFILE is never in it:
// the profile is per tier (the aliases set it).
func claudeCodeEnv(ctx context.Context, env *bootstrap.Env) ([]envVar, error) {
	region, err := env.Region(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS_REGION: %w", err)
	}
	model, err := anthropicModel(env.Config.Model, region)
	if err != nil {
		return nil, err
	}
	haiku, err := aliasPin("haiku_model", env.Config.HaikuModel, bedrock.DefaultHaikuModel, region, model)
	if err != nil {
		return nil, err
	}
	opus, err := aliasPin("opus_model", env.Config.OpusModel, bedrock.DefaultOpusModel, region, model)
	if err != nil {
		return nil, err
	}
	vars := []envVar{
		{"CLAUDE_CODE_USE_BEDROCK", "1"},
		{"ANTHROPIC_MODEL", model},
		{"AWS_REGION", region},
		// The sonnet alias is the default model: one key ([bedrock]
		// model) names the Sonnet, so `/model sonnet` and a fresh start
		// use the same profile.
		{"ANTHROPIC_DEFAULT_SONNET_MODEL", model},
		{"ANTHROPIC_DEFAULT_HAIKU_MODEL", haiku},
		{"ANTHROPIC_DEFAULT_OPUS_MODEL", opus},
	}
	if !env.Config.ClaudeAutoUpdate {
		// Claude Code lives in a root-owned prefix and its version is
		// pinned: DISABLE_AUTOUPDATER stops the background updater,
		// DISABLE_UPDATES also refuses `claude update` / `claude install`,
		// which would put an unpinned copy in ~/.local/bin ahead of it.
		vars = append(vars, envVar{"DISABLE_AUTOUPDATER", "1"}, envVar{"DISABLE_UPDATES", "1"})
	}
	return vars, nil
}

// aliasPin is the model ID an alias (haiku, opus) is pinned to: the
// default gets the Region's prefix, or ANTHROPIC_MODEL where the Region
// has no profile of it; a configured ID the Region cannot use is an error
// naming its key.
func aliasPin(key, configured, def, region, model string) (string, error) {
	if configured == def {
		if id, ok := bedrock.PinFor(region, def); ok {
			return id, nil
		}
		return model, nil
	}
	if err := bedrock.CheckKey(key, region, configured); err != nil {
		return "", err
	}
	return configured, nil
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
func renderProfileEnv(vars []envVar) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Managed by ccboot; changes are overwritten by `ccboot repair`. Settings: %s\n", bootstrap.DefaultConfigPath)
	for _, v := range vars {
		fmt.Fprintf(&b, "export %s=%s\n", v.Name, shellQuote(v.Value))
	}
	return []byte(b.String())
}
