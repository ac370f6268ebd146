package steps

import (
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
)

// shellWordParse reads one shell word from s the way sh does for the forms
// ccboot writes: single-quoted runs, backslash escapes and plain characters
// that mean nothing to the shell. It stops at a space or newline outside
// quotes and returns the word's value and the rest. Anything else unquoted
// (a $, ;, |, backquote...) is an error: that character would be syntax.
func shellWordParse(s string) (value, rest string, ok bool) {
	var b strings.Builder
	i := 0
	for i < len(s) {
		switch c := s[i]; {
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return "", "", false
			}
			b.WriteString(s[i+1 : i+1+end])
			i += end + 2
		case c == '\\':
			if i+1 >= len(s) || s[i+1] == '\n' {
				return "", "", false
			}
			b.WriteByte(s[i+1])
			i += 2
		case c == ' ' || c == '\n':
			return b.String(), s[i:], true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.,:/@%+=", c) >= 0:
			b.WriteByte(c)
			i++
		default:
			return "", "", false
		}
	}
	return b.String(), "", true
}

// FuzzRenderProfileEnvQuoting renders /etc/profile.d/claude-bedrock.sh with
// arbitrary (unvalidated) model and region values. Property: read as sh
// reads it, the file is one comment line and export assignments only, and
// each variable gets exactly the value given: no value can become code.
func FuzzRenderProfileEnvQuoting(f *testing.F) {
	for _, s := range []string{"us.anthropic.claude-sonnet-4-6", "", "'", "x';reboot;'", "$(id)", "`id`", "a\nb", "\\", "'\\''", "\"", "a b"} {
		f.Add(s, "eu-west-1")
	}
	f.Fuzz(func(t *testing.T, model, region string) {
		out := string(renderProfileEnv([]envVar{{"CLAUDE_CODE_USE_BEDROCK", "1"}, {"ANTHROPIC_MODEL", model}, {"AWS_REGION", region}}))
		comment, body, ok := strings.Cut(out, "\n")
		if !ok || !strings.HasPrefix(comment, "# ") {
			t.Fatalf("no comment line first: %q", out)
		}
		got := map[string]string{}
		for body != "" {
			rest, ok := strings.CutPrefix(body, "export ")
			if !ok {
				t.Fatalf("not an export line at %q", body)
			}
			name, rest, ok := strings.Cut(rest, "=")
			if !ok || name == "" || strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") != "" {
				t.Fatalf("bad variable name at %q", body)
			}
			value, rest, ok := shellWordParse(rest)
			if !ok || !strings.HasPrefix(rest, "\n") {
				t.Fatalf("value of %s is not one quoted word ending the line: %q", name, out)
			}
			got[name] = value
			body = rest[1:]
		}
		if got["ANTHROPIC_MODEL"] != model || got["AWS_REGION"] != region || got["CLAUDE_CODE_USE_BEDROCK"] != "1" {
			t.Fatalf("values changed by quoting: model %q -> %q, region %q -> %q", model, got["ANTHROPIC_MODEL"], region, got["AWS_REGION"])
		}
	})
}

// FuzzRenderAliasQuoting renders the alias block with arbitrary profile
// names. The alias body is parsed twice by the shell (at definition and at
// use), so it is read twice here: it must always come out as
// AWS_PROFILE=<the profile, exactly> claude.
func FuzzRenderAliasQuoting(f *testing.F) {
	for _, s := range []string{"claudecode-readonly", "'", "a b", "$(id)", "x';id;'", "\\", "", "a\nb", "%+=,:@"} {
		f.Add(s, "claudecode-elevated")
	}
	f.Fuzz(func(t *testing.T, ro, el string) {
		c := bootstrap.DefaultConfig()
		c.ReadOnlyProfile, c.ElevatedProfile = ro, el
		block, err := renderAliasBlock(c)
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		for _, a := range []struct{ name, profile string }{{c.AliasReadOnly, ro}, {c.AliasElevated, el}} {
			i := strings.Index(block, "\nalias "+a.name+"=")
			if i < 0 {
				t.Fatalf("no alias %s in %q", a.name, block)
			}
			body, rest, ok := shellWordParse(block[i+len("\nalias "+a.name+"="):])
			if !ok || !strings.HasPrefix(rest, "\n") {
				t.Fatalf("alias %s is not one quoted word: %q", a.name, block)
			}
			assign, ok := strings.CutPrefix(body, "AWS_PROFILE=")
			if !ok {
				t.Fatalf("alias body %q does not start with AWS_PROFILE=", body)
			}
			profile, tail, ok := shellWordParse(assign)
			if !ok || tail != " claude" || profile != a.profile {
				t.Fatalf("alias body %q runs %q with profile %q, want claude with %q", body, tail, profile, a.profile)
			}
		}
	})
}
