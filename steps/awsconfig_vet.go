package steps

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/ccboot/ccboot/bootstrap"
)

// VetAWSConfigFile is a stand-in until the aws-config step's own vet lands:
// it reads data as text, as the AWS SDK splits it (every `key = value`
// line is a key, whatever its indentation), and returns nil only when each
// managed profile holds exactly ccboot's keys and values. Nothing in data
// is acted on. The error is one line naming the line number and the fix,
// and never quotes the user's value.
func VetAWSConfigFile(ctx context.Context, env *bootstrap.Env, data []byte) error {
	sections, err := awsSections(ctx, env)
	if err != nil {
		return err
	}
	want := map[string]map[string]string{}
	for _, s := range sections[1:] { // the two profiles; [default] is the user's
		want[s.name] = map[string]string{}
		for _, kv := range s.keys {
			want[s.name][kv[0]] = kv[1]
		}
	}
	// Presentation only for the AWS CLI: they steer no credentials, no
	// endpoint and run nothing, so any value is the user's to choose.
	presentation := map[string]bool{"output": true, "cli_pager": true}
	const fix = "; fix: remove the line, or move the file away and run `sudo ccboot repair --only aws-config`"
	seen := map[string]map[string]bool{}
	var current string
	for i, raw := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		line := strings.TrimRight(string(raw), "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		if trimmed[0] == '[' {
			name := strings.Join(strings.Fields(strings.Trim(trimmed, "[]")), " ")
			current = ""
			if _, managed := want[name]; managed {
				if trimmed != "["+name+"]" || line != trimmed {
					return fmt.Errorf("~/.aws/config line %d: the header of [%s] is spaced unlike ccboot's%s", n, name, fix)
				}
				if seen[name] != nil {
					return fmt.Errorf("~/.aws/config line %d: [%s] appears twice%s", n, name, fix)
				}
				current, seen[name] = name, map[string]bool{}
			}
			continue
		}
		if current == "" {
			continue
		}
		key, value, ok := strings.Cut(trimmed, "=")
		key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
		wantValue, allowed := want[current][key]
		if presentation[key] {
			wantValue, allowed = value, true
		}
		switch {
		case !ok:
			return fmt.Errorf("~/.aws/config line %d: [%s] has a line that is not key = value%s", n, current, fix)
		case line != trimmed:
			return fmt.Errorf("~/.aws/config line %d: [%s] has an indented key, which the AWS SDK reads as a key of its own%s", n, current, fix)
		case strings.HasSuffix(value, "\\"):
			return fmt.Errorf("~/.aws/config line %d: [%s] ends a line with a backslash, which parsers join differently%s", n, current, fix)
		case !allowed:
			return fmt.Errorf("~/.aws/config line %d: [%s] sets %s, which ccboot does not write and root will not trust%s", n, current, key, fix)
		case value != wantValue:
			return fmt.Errorf("~/.aws/config line %d: [%s] sets %s to another value than ccboot's%s", n, current, key, fix)
		case seen[current][key]:
			return fmt.Errorf("~/.aws/config line %d: [%s] sets %s twice%s", n, current, key, fix)
		}
		seen[current][key] = true
	}
	for _, s := range sections[1:] {
		if seen[s.name] == nil {
			return fmt.Errorf("~/.aws/config has no [%s]; fix: run `sudo ccboot repair --only aws-config`", s.name)
		}
		for _, kv := range s.keys {
			if !seen[s.name][kv[0]] {
				return fmt.Errorf("~/.aws/config: [%s] lacks %s; fix: run `sudo ccboot repair --only aws-config`", s.name, kv[0])
			}
		}
	}
	return nil
}
