package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// Claude Code's machine-wide (managed) settings on Linux, as Anthropic
// documents them (code.claude.com/docs/en/managed-settings): the file
// managed-settings.json, and the drop-ins managed-settings.d/*.json (not
// hidden), which Claude Code merges on top of it in name order, a later
// file's scalar winning. Managed settings apply above user, project and
// --settings values, and their env block reaches every claude process, in
// a login shell or not (cron, SSM Run Command, ssh host claude -p, an IDE's
// remote server).
const (
	managedSettingsDir  = "etc/claude-code"
	managedSettingsPath = "etc/claude-code/managed-settings.json"
	managedDropInDir    = "etc/claude-code/managed-settings.d"
	// managedDropInPath is where ccboot writes when managed-settings.json
	// is someone else's. 10- sorts it before an administrator's own
	// drop-ins (which then win), after the base file (which it overrides
	// only for the variables ccboot manages).
	managedDropInPath = "etc/claude-code/managed-settings.d/10-ccboot.json"
)

// ClaudeSettings writes Claude Code's managed settings with an env block of
// the values profile-env exports (claudeCodeEnv).
type ClaudeSettings struct{}

func (ClaudeSettings) Name() string    { return "claude-settings" }
func (ClaudeSettings) Needs() []string { return nil }

// Scope implements bootstrap.Step: it holds the instance's Region, so an
// image never carries it; the first boot writes it.
func (ClaudeSettings) Scope() bootstrap.Scope { return bootstrap.ScopeInstance }

func (s ClaudeSettings) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	f, notes, err := s.file(ctx, env)
	if err != nil {
		return d, err
	}
	d.Notes = append(d.Notes, notes...)
	if err := f.drift(&d); err != nil {
		return d, fmt.Errorf("claude-settings: %w", err)
	}
	return d, nil
}

func (s ClaudeSettings) Apply(ctx context.Context, env *bootstrap.Env) error {
	f, _, err := s.file(ctx, env)
	if err != nil {
		return err
	}
	dirSpec := fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}
	// Root-owned and not writable by others all the way down: whoever can
	// write here sets every user's Claude Code environment.
	if _, err := env.Sys.EnsureDir(managedSettingsDir, dirSpec); err != nil {
		return fmt.Errorf("claude-settings: %w", err)
	}
	if f.name == managedDropInPath {
		if _, err := env.Sys.EnsureDir(managedDropInDir, dirSpec); err != nil {
			return fmt.Errorf("claude-settings: %w", err)
		}
	}
	if err := f.write(); err != nil {
		return fmt.Errorf("claude-settings: %w", err)
	}
	return nil
}

// file is the settings file ccboot converges: managed-settings.json, or
// its drop-in when managed-settings.json is not ccboot's (or the drop-in
// is already there). notes say why the drop-in, and which of the other
// file's variables it overrides.
func (ClaudeSettings) file(ctx context.Context, env *bootstrap.Env) (managedFile, []string, error) {
	vars, err := claudeCodeEnv(ctx, env)
	if err != nil {
		return managedFile{}, nil, fmt.Errorf("claude-settings: %w", err)
	}
	f := managedFile{
		tree: env.Sys,
		name: managedSettingsPath,
		want: renderManagedSettings(vars),
		spec: fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0},
	}
	dropIn, err := env.Sys.Exists(managedDropInPath)
	if err != nil {
		return f, nil, fmt.Errorf("claude-settings: %w", err)
	}
	old, _, err := env.Sys.ReadFileCheck(managedSettingsPath, nil)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if dropIn {
			f.name = managedDropInPath // ccboot's file since the other was there
		}
		return f, nil, nil
	case errors.Is(err, fsroot.ErrSymlink) || errors.Is(err, fsroot.ErrNotRegular):
		// Not a file ccboot writes (ccboot never follows a link): keep it.
		old = nil
	case err != nil:
		return f, nil, fmt.Errorf("claude-settings: %w", err)
	case writtenByCcboot(old) && !dropIn:
		return f, nil, nil
	}
	f.name = managedDropInPath
	notes := []string{fmt.Sprintf("kept %s (not written by ccboot); ccboot's settings are in %s, which Claude Code merges on top of it",
		env.Sys.Path(managedSettingsPath), env.Sys.Path(managedDropInPath))}
	notes = append(notes, overridden(old, vars)...)
	return f, notes, nil
}

// renderManagedSettings is the settings JSON: only an env block, keys
// sorted (encoding/json sorts map keys), so equal values give equal bytes.
func renderManagedSettings(vars []envVar) []byte {
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		m[v.Name] = v.Value
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(managedSettings{Env: m}); err != nil {
		panic(err) // a map of strings always encodes
	}
	return b.Bytes()
}

type managedSettings struct {
	Env map[string]string `json:"env"`
}

// managedEnvNames are every variable ccboot may write into the env block.
var managedEnvNames = []string{
	"CLAUDE_CODE_USE_BEDROCK", "ANTHROPIC_MODEL", "AWS_REGION",
	"ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL",
	"DISABLE_AUTOUPDATER", "DISABLE_UPDATES",
}

// writtenByCcboot reports whether data has the shape ccboot writes: one
// env block of string values, CLAUDE_CODE_USE_BEDROCK among them, and no
// variable ccboot does not manage. JSON has no comments to carry a marker,
// and any other key or variable is someone else's setting to keep.
func writtenByCcboot(data []byte) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil || len(top) != 1 || top["env"] == nil {
		return false
	}
	var vars map[string]string
	if json.Unmarshal(top["env"], &vars) != nil {
		return false
	}
	if _, ok := vars["CLAUDE_CODE_USE_BEDROCK"]; !ok {
		return false
	}
	for k := range vars {
		if !slices.Contains(managedEnvNames, k) {
			return false
		}
	}
	return true
}

// overridden names each variable the other managed-settings.json sets to
// a value ccboot's drop-in replaces.
func overridden(other []byte, vars []envVar) []string {
	var s struct {
		Env map[string]any `json:"env"`
	}
	if json.Unmarshal(other, &s) != nil {
		return nil
	}
	var out []string
	for _, v := range vars {
		if was, ok := s.Env[v.Name]; ok && fmt.Sprint(was) != v.Value {
			out = append(out, fmt.Sprintf("managed-settings.json sets %s=%v; ccboot's drop-in sets %q, which wins", v.Name, was, v.Value))
		}
	}
	return out
}
