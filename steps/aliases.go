package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// Aliases keeps one managed block of aliases in the target user's ~/.bashrc.
type Aliases struct{}

const (
	bashrcPath = ".bashrc"
	// blockBegin starts the begin marker line; the rest of that line is
	// explanation and may change between versions.
	blockBegin = "# >>> ccboot aliases >>>"
	blockEnd   = "# <<< ccboot aliases <<<"
)

// aliasNamePattern: an alias name is written unquoted, so it must be one
// plain word (the config validates the same shape).
var aliasNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func (Aliases) Name() string    { return "aliases" }
func (Aliases) Needs() []string { return nil }

// Scope implements bootstrap.Step: the user's home is made on the instance.
func (Aliases) Scope() bootstrap.Scope { return bootstrap.ScopeInstance }

func (s Aliases) Check(_ context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	f, err := s.file(env)
	if err != nil {
		return d, err
	}
	if err := f.drift(&d); err != nil {
		return d, fmt.Errorf("aliases: %w", err)
	}
	return d, nil
}

func (s Aliases) Apply(_ context.Context, env *bootstrap.Env) error {
	f, err := s.file(env)
	if err != nil {
		return err
	}
	if err := f.write(); err != nil {
		return fmt.Errorf("aliases: %w", err)
	}
	return nil
}

// file reads ~/.bashrc and renders it with the block in place. Only the
// content is managed: an existing file keeps its mode and owner; a new one
// is 0644 and the user's.
func (Aliases) file(env *bootstrap.Env) (managedFile, error) {
	block, err := renderAliasBlock(env.Config)
	if err != nil {
		return managedFile{}, err
	}
	home, u, err := userHome(env)
	if err != nil {
		return managedFile{}, fmt.Errorf("aliases: %w", err)
	}
	display := home.Path(bashrcPath)
	spec := fsroot.FileSpec{Mode: 0o644, UID: u.UID, GID: u.GID}
	// One descriptor (fsroot refuses links, FIFOs, hard-linked and
	// oversized files before reading): the owner and mode kept are those
	// of the bytes edited, and WriteFile refuses a file of another owner
	// swapped in later.
	old, fi, err := home.ReadFileCheck(bashrcPath, nil)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return managedFile{}, fmt.Errorf("aliases: %w", err)
	default:
		// The existing owner is passed explicitly: KeepOwner would
		// leave a rewritten file owned by root.
		spec.Mode = fi.Mode().Perm()
		spec.UID, spec.GID = fsroot.Owner(fi)
	}
	content, err := editManagedBlock(old, block)
	if err != nil {
		return managedFile{}, fmt.Errorf("aliases: %s: %w", display, err)
	}
	return managedFile{tree: home, name: bashrcPath, want: content, spec: spec}, nil
}

// renderAliasBlock renders the block. The alias body is re-read by the shell
// each time the alias is used, so the profile inside it is quoted for that
// reading and the whole body quoted again for the alias definition.
func renderAliasBlock(c *bootstrap.Config) (string, error) {
	var b strings.Builder
	b.WriteString(blockBegin + " (managed by ccboot; edit " + bootstrap.DefaultConfigPath + " instead)\n")
	for _, a := range []struct {
		name, profile string
		probe         string // enforced: a command that must succeed first
	}{
		{c.AliasReadOnly, c.ReadOnlyProfile, ""},
		{c.AliasElevated, c.ElevatedProfile, elevatedProbe(c)},
	} {
		if !aliasNamePattern.MatchString(a.name) {
			return "", fmt.Errorf("aliases: %q is not a usable alias name (letters, digits, _ -); fix [aliases] in %s", a.name, bootstrap.DefaultConfigPath)
		}
		body := "AWS_PROFILE=" + shellWord(a.profile) + " claude"
		if a.probe != "" {
			body = a.probe + " && " + body
		}
		fmt.Fprintf(&b, "alias %s=%s\n", a.name, shellQuote(body))
	}
	b.WriteString(blockEnd + "\n")
	return b.String(), nil
}

// elevatedProbe is what claude-el runs before Claude Code in enforced mode:
// it asks the broker for Elevated once, output discarded. Outside an
// approved session the broker's one-line refusal ("Elevated access is not
// approved: an admin runs `sudo ccboot elevate --for 30m`") is printed and
// the alias exits 1 before Claude Code starts, instead of Claude Code
// starting and failing at its first request. Inside a session `ccboot
// elevate` started, the same alias works, and the credentials it fetched
// are the broker's cached ones Claude Code then gets.
func elevatedProbe(c *bootstrap.Config) string {
	if !c.Enforced() {
		return ""
	}
	return BrokerCredentialProcess(broker.Elevated) + " >/dev/null"
}

// editManagedBlock puts block (marker lines included, ending in a newline)
// into content exactly once and leaves every other byte alone: an existing
// block is replaced in place; duplicates (an interrupted older tool) collapse
// into the first; a missing block is appended. A begin marker without an end
// marker, or the reverse, is an error: where the block ends would be a guess.
func editManagedBlock(content []byte, block string) ([]byte, error) {
	type span struct{ start, end int } // byte offsets; end is past the end line
	var spans []span
	open := -1
	openLine := 0
	off := 0
	for n, line := range strings.SplitAfter(string(content), "\n") {
		next := off + len(line)
		switch {
		case isBeginMarker(line):
			if open >= 0 {
				return nil, fmt.Errorf("line %d: ccboot aliases begin marker without an end marker before the next begin marker (line %d); remove the incomplete block and rerun", openLine, n+1)
			}
			open, openLine = off, n+1
		case isEndMarker(line):
			if open < 0 {
				return nil, fmt.Errorf("line %d: ccboot aliases end marker without a begin marker; remove it and rerun", n+1)
			}
			spans = append(spans, span{open, next})
			open = -1
		}
		off = next
	}
	if open >= 0 {
		return nil, fmt.Errorf("line %d: ccboot aliases begin marker without an end marker; remove the incomplete block (or add %q after it) and rerun", openLine, blockEnd)
	}
	if len(spans) == 0 {
		out := append([]byte(nil), content...)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		return append(out, block...), nil
	}
	var out []byte
	prev := 0
	for i, s := range spans {
		out = append(out, content[prev:s.start]...)
		if i == 0 {
			out = append(out, block...)
		}
		prev = s.end
	}
	return append(out, content[prev:]...), nil
}

func isBeginMarker(line string) bool { return strings.HasPrefix(line, blockBegin) }

func isEndMarker(line string) bool {
	return strings.TrimRight(line, " \t\r\n") == blockEnd
}
