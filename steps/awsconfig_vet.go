package steps

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"github.com/ccboot/ccboot/bootstrap"
)

// VetAWSConfigFile reads the user's ~/.aws/config as text, the way the AWS
// SDKs and the AWS CLI would, and returns nil only when each profile
// ccboot manages (ReadOnly, Elevated) holds exactly ccboot's values and
// nothing else that could steer a credential chain: no program to run, no
// file to read, no endpoint to call. Nothing in the file is executed or
// opened. Where the three readers that matter (aws-sdk-go-v2, which root's
// doctor uses; botocore, the AWS CLI; the JS SDK v3, Claude Code) could
// read a line of a managed profile differently, the file fails too.
func VetAWSConfigFile(ctx context.Context, env *bootstrap.Env, data []byte) error {
	sections, err := awsSections(ctx, env)
	if err != nil {
		return err
	}
	var profiles []awsSection
	for _, s := range sections {
		if strings.HasPrefix(s.name, "profile ") {
			profiles = append(profiles, s)
		}
	}
	if err := vetAWSConfig(data, profiles); err != nil {
		return fmt.Errorf("~/.aws/config %w", err)
	}
	return nil
}

// harmlessProfileKeys may stand in a managed profile besides ccboot's own
// keys. Each only changes how the AWS CLI presents results to the user who
// runs it; none is read by an SDK's credential or endpoint resolution.
var harmlessProfileKeys = map[string]bool{
	"output":               true, // json/text/table/yaml formatting of CLI results
	"cli_pager":            true, // the pager the CLI pipes its output to, run as the user who runs the CLI
	"cli_timestamp_format": true, // how the CLI prints timestamps
	"cli_binary_format":    true, // how the CLI encodes blob parameters
	"cli_auto_prompt":      true, // the CLI's interactive prompt
}

// plainKeyLine is a key line all three readers split the same way: a
// lower-case key at the start of the line and "=" as the first delimiter
// (the JS SDK knows no ":", and it does not fold case).
var plainKeyLine = regexp.MustCompile(`^([a-z0-9_]+)[ \t]*=`)

// printableKey is a key name safe to print in an error: a key name is not a
// secret, but a line without a delimiter can be one (a pasted key).
var printableKey = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// vetLine is one line of the file as aws-sdk-go-v2 splits it (on "\n").
type vetLine struct {
	text string // without "\n" and a "\r" before it
	no   int    // 1-based
}

func splitVetLines(data string) []vetLine {
	if data == "" {
		return nil
	}
	raw := strings.Split(data, "\n")
	if raw[len(raw)-1] == "" {
		raw = raw[:len(raw)-1]
	}
	out := make([]vetLine, len(raw))
	for i, r := range raw {
		out[i] = vetLine{text: strings.TrimSuffix(r, "\r"), no: i + 1}
	}
	return out
}

// isINISpace is white space for any of the readers: Go's TrimSpace, Python's
// str.strip and JavaScript's trim (which also strips a byte order mark).
func isINISpace(r rune) bool { return unicode.IsSpace(r) || r == '\ufeff' }

// headerTokens splits a line that may be a section header into the words
// any reader could see in it: quotes (botocore's shlex, the JS SDK's
// regexp), comment characters (aws-sdk-go-v2 cuts at the first # or ;) and
// brackets separate words. nil when the line cannot be a header.
func headerTokens(text string) []string {
	t := strings.TrimFunc(text, isINISpace)
	if !strings.HasPrefix(t, "[") {
		return nil
	}
	return strings.FieldsFunc(t, func(r rune) bool {
		return isINISpace(r) || strings.ContainsRune(`[]"';#\`, r)
	})
}

// headerNames reports whether any reader could take the line for the header
// of section name ("default" or "profile X"): botocore takes every header
// whose first word starts with "profile" and has a second word.
func headerNames(text, name string) bool {
	tok := headerTokens(text)
	if len(tok) == 0 {
		return false
	}
	if p, ok := strings.CutPrefix(name, "profile "); ok {
		return len(tok) >= 2 && strings.HasPrefix(tok[0], "profile") && tok[1] == p
	}
	return tok[0] == name || len(tok) >= 2 && strings.HasPrefix(tok[0], "profile") && tok[1] == name
}

// isAgreedHeader reports whether every reader takes the line for a section
// header, so that a managed section surely ends there: at the start of the
// line, bracketed after aws-sdk-go-v2's comment cut (at the first # or ;)
// and after the JS SDK's (at a # or ; after white space).
func isAgreedHeader(text string) bool {
	if !strings.HasPrefix(text, "[") {
		return false
	}
	// Only spaces and tabs are trimmed: the readers disagree on the rest
	// (Go keeps a byte order mark that JavaScript strips).
	bracketed := func(s string) bool {
		s = strings.TrimRight(s, " \t")
		return len(s) > 2 && s[len(s)-1] == ']'
	}
	goCut := text
	if i := strings.IndexAny(goCut, "#;"); i >= 0 {
		goCut = goCut[:i]
	}
	jsCut := text
	for i, r := range text {
		if (r == '#' || r == ';') && i > 0 && isINISpace(rune(text[i-1])) {
			jsCut = text[:i]
			break
		}
	}
	return bracketed(goCut) && bracketed(jsCut)
}

// vetAWSConfig checks data against the managed sections: a "profile X"
// section must hold ccboot's keys with ccboot's values and otherwise only
// harmlessProfileKeys; [default] must hold ccboot's keys (it is the user's
// profile as well). Errors start with "line N: " (no file name) and never
// quote a value from the file.
func vetAWSConfig(data []byte, sections []awsSection) error {
	s := string(data)
	if n := loneCRLine(s); n > 0 {
		return fmt.Errorf("line %d: a carriage return without a newline, which the AWS CLI reads as a line break and the AWS SDKs do not; fix: replace it with a newline", n)
	}
	lines := splitVetLines(s)
	for _, sec := range sections {
		if err := vetSection(lines, sec); err != nil {
			return err
		}
	}
	return nil
}

// loneCRLine is the line number of the first CR not followed by LF, 0 if
// none: Python (the AWS CLI) reads it as a line break, the SDKs do not, so
// the two would put the text after it in different places. A CR ending the
// file has nothing after it.
func loneCRLine(s string) int {
	for i := 0; i < len(s)-1; i++ {
		if s[i] == '\r' && s[i+1] != '\n' {
			return strings.Count(s[:i], "\n") + 1
		}
	}
	return 0
}

func vetSection(lines []vetLine, sec awsSection) error {
	start := -1
	for i, l := range lines {
		if !headerNames(l.text, sec.name) {
			continue
		}
		if l.text != "["+sec.name+"]" {
			return fmt.Errorf("line %d: a section header names [%s] with spacing, quotes, comments or a prefix the AWS tools read differently; fix: write it as [%s] (sudo ccboot repair does)", l.no, sec.name, sec.name)
		}
		if start >= 0 {
			return fmt.Errorf("line %d: [%s] appears twice (also on line %d), which the AWS CLI rejects and the SDKs merge; fix: merge the two into one", l.no, sec.name, lines[start].no)
		}
		start = i
	}
	if start < 0 {
		return fmt.Errorf("has no [%s]; fix: run sudo ccboot repair", sec.name)
	}
	v := sectionVet{sec: sec, strict: strings.HasPrefix(sec.name, "profile "), want: map[string]string{}, seen: map[string]int{}}
	for _, kv := range sec.keys {
		v.want[kv[0]] = kv[1]
	}
	for _, l := range lines[start+1:] {
		if isAgreedHeader(l.text) {
			break
		}
		if err := v.line(l); err != nil {
			return err
		}
	}
	for _, kv := range sec.keys {
		if _, ok := v.seen[kv[0]]; !ok {
			return fmt.Errorf("line %d: [%s] does not set %s; fix: run sudo ccboot repair", lines[start].no, sec.name, kv[0])
		}
	}
	return nil
}

// sectionVet walks the body of one managed section. strict (a profile
// ccboot owns) allows ccboot's keys and harmlessProfileKeys only, each on a
// plain line; otherwise ([default], the user's profile too) only ccboot's
// keys are checked, and whatever else the user wrote is the user's.
type sectionVet struct {
	sec       awsSection
	strict    bool
	want      map[string]string
	seen      map[string]int // key -> line number
	afterWant bool           // the previous key line set one of ccboot's keys
}

// goKeyName is the key aws-sdk-go-v2 and botocore read from a line: before
// the first "=" or ":", trimmed, lower case. "" when there is no delimiter.
func goKeyName(text string) string {
	i := strings.IndexAny(text, "=:")
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimFunc(text[:i], isINISpace))
}

func (v *sectionVet) line(l vetLine) error {
	t, name := l.text, v.sec.name
	trimmed := strings.TrimFunc(t, isINISpace)
	switch {
	case trimmed == "" || t[0] == '#' || t[0] == ';':
		return nil // blank or a comment for every reader
	case strings.HasPrefix(trimmed, "["):
		return fmt.Errorf("line %d: [%s] has a line the AWS tools disagree on as a section header; fix: write the header as [name] at the start of its line, or remove it", l.no, name)
	}
	if isINISpace([]rune(t)[0]) {
		// aws-sdk-go-v2 reads an indented key = value after a non-empty
		// value as a key of its own, the AWS CLI as part of the value
		// above (and the JS SDK either way, by what precedes it).
		if v.strict || v.afterWant || v.want[goKeyName(t)] != "" {
			return fmt.Errorf("line %d: [%s] has an indented line, which the AWS SDKs read as a key of its own and the AWS CLI as part of the value above; fix: remove the indentation or the line (sudo ccboot repair removes it)", l.no, name)
		}
		return nil
	}
	v.afterWant = false
	m := plainKeyLine.FindStringSubmatch(t)
	if m == nil {
		key := goKeyName(t)
		if !v.strict && v.want[key] == "" {
			return nil
		}
		if printableKey.MatchString(key) {
			return fmt.Errorf("line %d: [%s] sets %s in a way the AWS tools read differently; fix: write it as %s = value, in lower case (sudo ccboot repair does)", l.no, name, key, key)
		}
		return fmt.Errorf("line %d: [%s] has a line that is not key = value; fix: remove it (sudo ccboot repair does)", l.no, name)
	}
	key := m[1]
	w, managed := v.want[key]
	if !v.strict && !managed {
		return nil
	}
	if at, ok := v.seen[key]; ok {
		return fmt.Errorf("line %d: [%s] sets %s twice (also on line %d), which the AWS CLI rejects; fix: remove one (sudo ccboot repair does)", l.no, name, key, at)
	}
	v.seen[key] = l.no
	if strings.HasSuffix(strings.TrimRightFunc(t, isINISpace), `\`) {
		return fmt.Errorf("line %d: [%s] sets %s on a line ending in a backslash, which some INI readers join with the next line; fix: remove the backslash (sudo ccboot repair rewrites the line)", l.no, name, key)
	}
	if managed {
		v.afterWant = true
		if strings.TrimFunc(t[len(m[0]):], isINISpace) != w {
			return fmt.Errorf("line %d: [%s] sets %s to a value other than ccboot's; fix: run sudo ccboot repair", l.no, name, key)
		}
		return nil
	}
	if !harmlessProfileKeys[key] {
		return fmt.Errorf("line %d: [%s] sets %s, which ccboot does not allow in the profiles it manages (only ccboot's %s, plus presentation keys such as output): it could make an SDK run a program, read a file or call an endpoint of the user's choosing; fix: remove the line (sudo ccboot repair does) and set it in a profile of your own", l.no, name, key, keyList(v.sec))
	}
	return nil
}

// keyList names a section's managed keys for an error: "a, b and c".
func keyList(sec awsSection) string {
	names := make([]string, len(sec.keys))
	for i, kv := range sec.keys {
		names[i] = kv[0]
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
