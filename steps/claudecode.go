package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// ClaudeCode installs Claude Code's native executable, verified against the
// checksum its source publishes, under a root-owned prefix (default
// /usr/local): PREFIX/lib/claude-code/versions/VERSION/claude, with
// PREFIX/bin/claude a symbolic link to the active version. No node or npm
// process is involved, so it needs nothing from the packages step and
// downloads while the package transaction runs. The auto-updater cannot
// write to the prefix, so the profile-env step exports DISABLE_AUTOUPDATER=1
// unless auto_update is on.
type ClaudeCode struct {
	// sleep waits between download retries; nil means a real timer. Tests
	// set it so they do not wait.
	sleep func(context.Context, time.Duration) error
	// maxBytes caps the executable and the decompressed tarball; 0 means
	// maxClaudeBytes. Tests lower it to reach the cap with small files.
	maxBytes int64
}

// Name implements bootstrap.Step.
func (ClaudeCode) Name() string { return "claude-code" }

// Needs implements bootstrap.Step: nothing; it runs beside packages.
func (ClaudeCode) Needs() []string { return nil }

// Scope implements bootstrap.Step: the same Claude Code on every instance of an image.
func (ClaudeCode) Scope() bootstrap.Scope { return bootstrap.ScopeImage }

// claudeNpmPackage is where the npm-era ccboot installed Claude Code.
const claudeNpmPackage = "@anthropic-ai/claude-code"

// claudeLayout names the paths under the prefix.
type claudeLayout struct{ prefix string }

func (l claudeLayout) versions() string       { return path.Join(l.prefix, "lib/claude-code/versions") }
func (l claudeLayout) dir(v string) string    { return path.Join(l.versions(), v) }
func (l claudeLayout) exe(v string) string    { return path.Join(l.dir(v), "claude") }
func (l claudeLayout) record(v string) string { return path.Join(l.dir(v), "install.json") }
func (l claudeLayout) link() string           { return path.Join(l.prefix, "bin/claude") }
func (l claudeLayout) linkTarget(v string) string {
	return "../lib/claude-code/versions/" + v + "/claude"
}
func (l claudeLayout) npmCopy() string {
	return path.Join(l.prefix, "lib/node_modules", claudeNpmPackage)
}

// claudeRecord is written beside each installed executable, so Check can
// tell an intact install from a changed one by one stat, without starting
// a process or reading 400 MB.
type claudeRecord struct {
	Version  string `json:"version"`
	Source   string `json:"source"`
	Platform string `json:"platform"`
	URL      string `json:"url"`
	SHA256   string `json:"sha256"`
	// Integrity is the npm tarball's dist.integrity (source = npm).
	Integrity string `json:"integrity,omitempty"`
	// Signer, Manifest and Signature (source = release): the key that
	// signed the manifest, and the manifest and signature as verified, so
	// --verify re-checks the executable against the signed checksum offline.
	Signer    string `json:"signer,omitempty"`
	Manifest  []byte `json:"manifest,omitempty"`
	Signature []byte `json:"manifest_sig,omitempty"`
	Size      int64  `json:"size"`
	MTimeNS   int64  `json:"mtime_ns"`
}

var versionDirPattern = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// claudeState is what is on disk.
type claudeState struct {
	version string        // active version ("" none or not ours)
	foreign string        // PREFIX/bin/claude's target when it is not one of our versions
	notLink bool          // PREFIX/bin/claude exists but is not a symbolic link
	rec     *claudeRecord // the active version's record, when readable
	broken  string        // why the active version does not match its record
	npmCopy bool          // the npm layout is still there
}

func (c ClaudeCode) state(env *bootstrap.Env) (claudeState, error) {
	var st claudeState
	l := claudeLayout{env.Config.ClaudePrefix}
	if ok, err := env.Sys.Exists(l.npmCopy()); err != nil {
		return st, fmt.Errorf("claude-code: %w", err)
	} else {
		st.npmCopy = ok
	}
	fi, err := env.Sys.Lstat(l.link())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return st, nil
	case err != nil:
		return st, fmt.Errorf("claude-code: %w", err)
	case fi.Mode()&fs.ModeSymlink == 0:
		st.notLink = true
		return st, nil
	}
	target, err := env.Sys.Readlink(l.link())
	if err != nil {
		return st, fmt.Errorf("claude-code: %w", err)
	}
	v, ok := strings.CutPrefix(target, "../lib/claude-code/versions/")
	v, ok2 := strings.CutSuffix(v, "/claude")
	if !ok || !ok2 || !versionDirPattern.MatchString(v) {
		st.foreign = target
		return st, nil
	}
	st.version = v
	st.rec, st.broken = c.intact(env, l, v)
	return st, nil
}

// intact compares an installed version with its record: a regular file of
// the recorded size and mtime, mode 0755; with env.Verify, its SHA-256 too.
func (ClaudeCode) intact(env *bootstrap.Env, l claudeLayout, v string) (*claudeRecord, string) {
	data, err := env.Sys.ReadFile(l.record(v))
	if err != nil {
		return nil, "no readable install record " + env.Sys.Path(l.record(v))
	}
	var rec claudeRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Version != v || rec.SHA256 == "" {
		return nil, "install record " + env.Sys.Path(l.record(v)) + " is unreadable"
	}
	fi, err := env.Sys.Lstat(l.exe(v))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &rec, env.Sys.Path(l.exe(v)) + " is missing"
	case err != nil:
		return &rec, err.Error()
	case !fi.Mode().IsRegular():
		return &rec, env.Sys.Path(l.exe(v)) + " is not a regular file"
	case fi.Size() != rec.Size || fi.ModTime().UnixNano() != rec.MTimeNS:
		return &rec, fmt.Sprintf("%s changed since it was installed (size %d, recorded %d)", env.Sys.Path(l.exe(v)), fi.Size(), rec.Size)
	case fi.Mode().Perm() != 0o755:
		return &rec, fmt.Sprintf("%s has mode %04o, not 0755", env.Sys.Path(l.exe(v)), fi.Mode().Perm())
	}
	if uid, _ := fsroot.Owner(fi); uid != 0 && env.Live() {
		return &rec, fmt.Sprintf("%s is owned by uid %d, not root", env.Sys.Path(l.exe(v)), uid)
	}
	if env.Verify {
		h := sha256.New()
		if _, err := env.Sys.Hash(l.exe(v), h); err != nil {
			return &rec, err.Error()
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != rec.SHA256 {
			return &rec, fmt.Sprintf("%s has sha256 %s, recorded %s", env.Sys.Path(l.exe(v)), got, rec.SHA256)
		}
		if why := recordSignature(env, &rec); why != "" {
			return &rec, env.Sys.Path(l.exe(v)) + ": " + why
		}
	}
	return &rec, ""
}

// Check implements bootstrap.Step. It starts no process; only a channel
// name (stable, latest) costs one small request to resolve.
func (c ClaudeCode) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	st, err := c.state(env)
	if err != nil {
		return d, err
	}
	want, err := newClaudeSource(env, c.sleep, c.maxBytes).resolve(ctx)
	if err != nil {
		return d, err
	}
	l := claudeLayout{env.Config.ClaudePrefix}
	src := env.Config.ClaudeSource
	switch {
	case st.notLink:
		d.Differ("install Claude Code %s from %s (%s is not a symbolic link)", want, src, env.Sys.Path(l.link()))
	case st.foreign != "":
		d.Differ("install Claude Code %s from %s (%s points to %s)", want, src, env.Sys.Path(l.link()), st.foreign)
	case st.version == "":
		d.Differ("install Claude Code %s from %s (not installed)", want, src)
	case st.version != want:
		d.Differ("install Claude Code %s from %s (installed: %s)", want, src, st.version)
	case st.broken != "":
		d.Differ("reinstall Claude Code %s from %s (%s)", want, src, st.broken)
	default:
		// What status shows for this step.
		d.Note("Claude Code %s (source %s, sha256 %s) at %s -> %s", st.version, st.rec.Source, st.rec.SHA256, env.Sys.Path(l.link()), env.Sys.Path(l.exe(st.version)))
		for _, n := range signatureNotes(env, st.rec) {
			d.Note("%s", n)
		}
	}
	if st.npmCopy {
		d.Differ("remove the npm copy %s", env.Sys.Path(l.npmCopy()))
	}
	return d, nil
}

// Apply implements bootstrap.Step.
func (c ClaudeCode) Apply(ctx context.Context, env *bootstrap.Env) error {
	src := newClaudeSource(env, c.sleep, c.maxBytes)
	want, err := src.resolve(ctx)
	if err != nil {
		return err
	}
	l := claudeLayout{env.Config.ClaudePrefix}
	st, err := c.state(env)
	if err != nil {
		return err
	}
	if rec, broken := c.intact(env, l, want); rec == nil || broken != "" {
		if err := c.install(ctx, env, src, l, want); err != nil {
			return err
		}
	}
	rootDir := fsroot.FileSpec{Mode: 0o755, UID: fsroot.KeepOwner, GID: fsroot.KeepOwner}
	if _, err := env.Sys.EnsureDir(path.Dir(l.link()), rootDir); err != nil {
		return fmt.Errorf("claude-code: %w", err)
	}
	if _, err := env.Sys.SwitchLink(l.link(), l.linkTarget(want)); err != nil {
		return fmt.Errorf("claude-code: switch %s to %s: %w", env.Sys.Path(l.link()), want, err)
	}
	fsroot.CrashPoint("claude/linked", l.link())
	if st.npmCopy {
		// The link that pointed into it is already replaced above.
		if err := env.Sys.RemoveAll(l.npmCopy()); err != nil {
			return fmt.Errorf("claude-code: remove the npm copy %s: %w; remove it by hand", env.Sys.Path(l.npmCopy()), err)
		}
		env.Log.Info("removed the npm copy of Claude Code", zap.String("path", env.Sys.Path(l.npmCopy())))
	}
	c.prune(env, l, want, st.version)
	if !env.Live() {
		return nil // nothing is run from an offline image
	}
	return verifyClaude(ctx, env)
}

// install downloads version want into its own directory and records it.
func (c ClaudeCode) install(ctx context.Context, env *bootstrap.Env, src claudeSource, l claudeLayout, want string) error {
	plat, err := claudePlatform(env)
	if err != nil {
		return err
	}
	rootDir := fsroot.FileSpec{Mode: 0o755, UID: fsroot.KeepOwner, GID: fsroot.KeepOwner}
	if _, err := env.Sys.EnsureDir(l.dir(want), rootDir); err != nil {
		return fmt.Errorf("claude-code: %w", err)
	}
	env.Progress(fmt.Sprintf("downloading Claude Code %s for %s from %s", want, plat, env.Config.ClaudeSource))
	rec, err := src.fetch(ctx, want, plat, l.exe(want))
	if err != nil {
		// A version directory the failed download created stays empty:
		// remove it (Remove does not remove a directory with files).
		_ = env.Sys.Remove(l.dir(want))
		return err
	}
	fi, err := env.Sys.Lstat(l.exe(want))
	if err != nil {
		return fmt.Errorf("claude-code: %w", err)
	}
	rec.Version, rec.Source, rec.Platform = want, env.Config.ClaudeSource, plat
	rec.Size, rec.MTimeNS = fi.Size(), fi.ModTime().UnixNano()
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if _, err := env.Sys.WriteFile(l.record(want), append(data, '\n'), fsroot.FileSpec{Mode: 0o644, UID: fsroot.KeepOwner, GID: fsroot.KeepOwner}); err != nil {
		return fmt.Errorf("claude-code: record the install: %w", err)
	}
	env.Log.Info("installed Claude Code", zap.String("version", want), zap.String("url", rec.URL), zap.String("sha256", rec.SHA256), zap.Int64("size", rec.Size))
	return nil
}

// prune keeps the active version and the one before it (for rollback:
// set [claude-code] version back and repair) and removes the rest.
func (ClaudeCode) prune(env *bootstrap.Env, l claudeLayout, active, previous string) {
	names, err := env.Sys.ReadDirNames(l.versions())
	if err != nil {
		return
	}
	for _, n := range names {
		if n == active || n == previous {
			continue
		}
		if err := env.Sys.RemoveAll(path.Join(l.versions(), n)); err != nil {
			env.Log.Warn("could not remove an old Claude Code version", zap.String("version", n), zap.Error(err))
		}
	}
}

// verifyClaude runs `claude --version` as the target user: it proves the
// executable works for the person who will use it, not only for root. It
// runs with no controlling terminal: under `sudo ccboot repair` it would
// otherwise share the admin's, and a user's program could type into it.
func verifyClaude(ctx context.Context, env *bootstrap.Env) error {
	bin := path.Join(env.Config.ClaudePrefix, "bin/claude")
	res, err := env.Run.Run(ctx, runner.Cmd{Name: "runuser", Args: []string{"-u", env.Config.User, "--", bin, "--version"}, NoTerminal: true})
	if err != nil {
		return fmt.Errorf("claude-code: installed, but `%s --version` as %s failed: %w; run it by hand as %s to see why", bin, env.Config.User, err, env.Config.User)
	}
	env.Log.Info("claude --version", zap.String("user", env.Config.User), zap.String("output", strings.TrimSpace(string(res.Stdout))))
	return nil
}
