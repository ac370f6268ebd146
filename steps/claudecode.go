package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// claudePackage is the npm package ClaudeCode installs.
const claudePackage = "@anthropic-ai/claude-code"

// ClaudeCode installs @anthropic-ai/claude-code globally under a root-owned
// prefix (default /usr/local). The auto-updater cannot write there, so the
// profile-env step exports DISABLE_AUTOUPDATER=1 unless auto_update is on.
type ClaudeCode struct {
	// sleep waits between npm retries; nil means a real timer. Tests set
	// it so they do not wait.
	sleep func(context.Context, time.Duration) error
}

// Name implements bootstrap.Step.
func (ClaudeCode) Name() string { return "claude-code" }

// Needs implements bootstrap.Step: npm comes from the packages step.
func (ClaudeCode) Needs() []string { return []string{"packages"} }

// Scope implements bootstrap.Step: the same Claude Code on every instance of an image.
func (ClaudeCode) Scope() bootstrap.Scope { return bootstrap.ScopeImage }

// claudeInstall is what is on disk under the prefix.
type claudeInstall struct {
	version string // "" when not installed
	bin     bool   // PREFIX/bin/claude exists
}

// installed reads the package's package.json; it never runs npm, so a
// no-op Check spawns no process.
func (ClaudeCode) installed(env *bootstrap.Env) (claudeInstall, error) {
	var ci claudeInstall
	prefix := env.Config.ClaudePrefix
	pj := path.Join(prefix, "lib/node_modules", claudePackage, "package.json")
	data, err := env.Sys.ReadFile(pj)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return ci, fmt.Errorf("claude-code: read %s: %w", env.Sys.Path(pj), err)
	default:
		var meta struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		}
		if err := json.Unmarshal(data, &meta); err != nil || meta.Version == "" {
			// A broken install is reinstalled, not fatal.
			ci.version = "unreadable"
		} else {
			ci.version = meta.Version
		}
	}
	// The bin entry is npm's symlink into the package: a link is expected
	// here (root-owned prefix), so Lstat, not a managed-file read.
	if _, err := env.Sys.Lstat(path.Join(prefix, "bin/claude")); err == nil {
		ci.bin = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return ci, fmt.Errorf("claude-code: %w", err)
	}
	return ci, nil
}

// Check implements bootstrap.Step.
func (c ClaudeCode) Check(_ context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	ci, err := c.installed(env)
	if err != nil {
		return d, err
	}
	want := env.Config.ClaudeVersion
	bin := path.Join(env.Config.ClaudePrefix, "bin/claude")
	switch {
	case ci.version == "":
		d.Differ("install %s %s (not installed)", claudePackage, want)
	case ci.version == "unreadable":
		d.Differ("install %s %s (package.json under %s is unreadable)", claudePackage, want, env.Config.ClaudePrefix)
	case want == "latest" && ci.bin:
		d.Note("version = latest: %s %s is installed; ccboot does not upgrade it (pin [claude-code] version to choose one)", claudePackage, ci.version)
	case want != "latest" && ci.version != want:
		d.Differ("install %s %s (installed: %s)", claudePackage, want, ci.version)
	case !ci.bin:
		d.Differ("install %s %s (%s missing)", claudePackage, want, bin)
	default:
		// What status shows for this step: the version, read from
		// package.json (running claude on every check would cost a process).
		d.Note("%s %s at %s", claudePackage, ci.version, bin)
	}
	return d, nil
}

// Apply implements bootstrap.Step.
func (c ClaudeCode) Apply(ctx context.Context, env *bootstrap.Env) error {
	npm, err := findNpm(env)
	if err != nil {
		return err
	}
	want := env.Config.ClaudeVersion
	prefix := env.Config.ClaudePrefix
	cmd := env.InRoot(runner.Cmd{
		Name: npm,
		Args: []string{"install", "-g", "--prefix", prefix, "--no-fund", "--no-audit", "--loglevel=error", claudePackage + "@" + want},
		Env:  []string{"npm_config_update_notifier=false"},
	})
	attempts := max(env.Config.NpmRetries, 1)
	wait := 2 * time.Second
	for i := 1; ; i++ {
		env.Progress(fmt.Sprintf("installing %s %s (attempt %d of %d)", claudePackage, want, i, attempts))
		res, err := env.Run.Run(ctx, cmd)
		if err == nil {
			break
		}
		out := string(res.Stdout) + "\n" + string(res.Stderr)
		if npmNoVersion.MatchString(out) {
			return fmt.Errorf("claude-code: version %s does not exist on the npm registry; set [claude-code] version", want)
		}
		network := npmNetwork.MatchString(out)
		if network && i >= attempts {
			return fmt.Errorf("claude-code: npm install %s@%s (attempt %d of %d): %w; check that this instance reaches the npm registry (route, DNS, proxy) and rerun, or raise [claude-code] retries", claudePackage, want, i, attempts, err)
		}
		if !network {
			return fmt.Errorf("claude-code: npm install %s@%s (attempt %d of %d): %w", claudePackage, want, i, attempts, err)
		}
		env.Log.Warn("npm install failed on the network; retrying", zap.Int("attempt", i), zap.Duration("wait", wait), zap.Error(err))
		if err := c.wait(ctx, wait); err != nil {
			return fmt.Errorf("claude-code: waiting to retry npm install: %w", err)
		}
		wait = min(wait*2, 30*time.Second)
	}
	if !env.Live() {
		return nil // nothing is run from an offline image
	}
	return verifyClaude(ctx, env)
}

// verifyClaude runs `claude --version` as the target user: it proves the
// binary works for the person who will use it, not only for root.
func verifyClaude(ctx context.Context, env *bootstrap.Env) error {
	bin := path.Join(env.Config.ClaudePrefix, "bin/claude")
	res, err := env.Run.Run(ctx, runner.Cmd{Name: "runuser", Args: []string{"-u", env.Config.User, "--", bin, "--version"}})
	if err != nil {
		return fmt.Errorf("claude-code: installed, but `%s --version` as %s failed: %w; run it by hand as %s to see why", bin, env.Config.User, err, env.Config.User)
	}
	env.Log.Info("claude --version", zap.String("user", env.Config.User), zap.String("output", strings.TrimSpace(string(res.Stdout))))
	return nil
}

var (
	// ETARGET: no such version; E404: no such package. Retrying cannot help.
	npmNoVersion = regexp.MustCompile(`\bETARGET\b|No matching version found|\bE404\b`)
	npmNetwork   = regexp.MustCompile(`(?i)\b(ETIMEDOUT|ECONNRESET|EAI_AGAIN|ENOTFOUND|ECONNREFUSED|ESOCKETTIMEDOUT|E5[0-9][0-9])\b|\b5[0-9][0-9] (Internal|Bad|Service|Gateway)|network`)
)

// npmCandidates are where npm may be, in order: the plain name first, then
// AL2023's namespaced npm-N when node/npm alternatives are not set.
var npmCandidates = []string{"npm", "npm-24", "npm-22"}

// findNpm picks the npm the packages step installed.
func findNpm(env *bootstrap.Env) (string, error) {
	for _, n := range npmCandidates {
		if ok, _ := env.Sys.Exists("usr/bin/" + n); ok {
			return n, nil
		}
	}
	return "", fmt.Errorf("claude-code: no npm in %s (looked for %s); let the packages step install nodejs or install npm yourself", env.Sys.Path("usr/bin"), strings.Join(npmCandidates, ", "))
}

func (c ClaudeCode) wait(ctx context.Context, d time.Duration) error {
	if c.sleep != nil {
		return c.sleep(ctx, d)
	}
	return sleepCtx(ctx, d)
}
