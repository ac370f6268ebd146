//go:build reliability

package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// TestReliabilityBadConfig feeds bad values through the config file and
// through --set. Each is refused before any step runs: exit 3, one stderr
// line naming the file (or flag) and the key, and not one path of the root
// created, changed or removed. A user that does not exist is only known
// once the root's /etc/passwd is read: the steps that need the user fail
// with one line naming [ccboot] user, exit 1, and nothing is written in a
// home directory.
func TestReliabilityBadConfig(t *testing.T) {
	t.Parallel()
	imds := aemmtest.Start(t, aemmtest.Default())
	cases := []struct {
		name, conf string
		set        []string
		want       []string   // all in the single stderr line
		lines      [][]string // instead of want: a file with several mistakes, one stderr line each, in order
	}{
		{"unknown key", "[swap]\nsizee = 1G\n", nil, []string{`ccboot.conf: [swap] sizee = "1G": unknown key`, "did you mean [swap] size?"}, nil},
		{"unknown section", "[swapp]\nsize = 1G\n", nil, []string{`ccboot.conf: [swapp] size = "1G": unknown key`, "did you mean [swap] size?"}, nil},
		{"wrong type: number", "[claude-code]\nretries = three\n", nil, []string{"ccboot.conf: [claude-code] retries", "whole number"}, nil},
		{"wrong type: bool", "[claude-code]\nauto_update = maybe\n", nil, []string{"ccboot.conf: [claude-code] auto_update", "true or false"}, nil},
		{"wrong type: duration", "[ccboot]\nlock_timeout = 10\n", nil, []string{"ccboot.conf: [ccboot] lock_timeout", "duration"}, nil},
		{"negative swap size", "[swap]\nsize = -1G\n", nil, []string{"ccboot.conf: [swap] size", "512M"}, nil},
		{"huge swap size", "[swap]\nsize = 9000G\n", nil, []string{"ccboot.conf: [swap] size", "64G"}, nil},
		{"swap size overflowing int64", "[swap]\nsize = 99999999999999999999G\n", nil, []string{"ccboot.conf: [swap] size"}, nil},
		{"model with shell metacharacters", "[bedrock]\nmodel = us.anthropic.claude$(touch /tmp/pwned)\n", nil, []string{"ccboot.conf: [bedrock] model", "Bedrock model ID"}, nil},
		{"model with a quote and a semicolon", "[bedrock]\nmodel = x';reboot;'\n", nil, []string{"ccboot.conf: [bedrock] model"}, nil},
		{"role ARN of an unknown partition", "[aws]\nreadonly_role_arn = arn:aws-mars:iam::111122223333:role/ro\nelevated_role_arn = arn:aws:iam::111122223333:role/el\n", nil,
			[]string{"ccboot.conf: [aws] readonly_role_arn", "partition"}, nil},
		{"role ARN of the wrong shape (a user)", "[aws]\nreadonly_role_arn = arn:aws:iam::111122223333:role/ro\nelevated_role_arn = arn:aws:iam::111122223333:user/el\n", nil,
			[]string{"ccboot.conf: [aws] elevated_role_arn", "role ARN"}, nil},
		{"role ARN with a short account", "[aws]\nreadonly_role_arn = arn:aws:iam::1111:role/ro\nelevated_role_arn = arn:aws:iam::111122223333:role/el\n", nil,
			[]string{"ccboot.conf: [aws] readonly_role_arn"}, nil},
		{"only one role ARN", "[aws]\nreadonly_role_arn = arn:aws:iam::111122223333:role/ro\n", nil, []string{"ccboot.conf: set both [aws] readonly_role_arn and elevated_role_arn"}, nil},
		{"user name that cannot be a login", "[ccboot]\nuser = $(id)\n", nil, []string{"ccboot.conf: [ccboot] user"}, nil},
		{"not INI", "[swap\nsize = 1G\n", nil, []string{"ccboot.conf: not valid INI"}, nil},
		{"--set negative swap", "", []string{"--set", "swap.size=-5M"}, []string{`--set swap.size="-5M"`}, nil},
		{"--set unknown key", "", []string{"--set", "swap.bogus=1"}, []string{`--set swap.bogus="1": unknown key`}, nil},
		{"--model with metacharacters", "", []string{"--model", "m`id`"}, []string{"--set bedrock.model"}, nil},
		{"several mistakes at once", "[swap]\nsize = 12X\n[aws]\nregoin = us-east-1\n[claude-code]\nretries = three\nretries = 4\n[packages]\ninstall = git openssh-server-\n",
			[]string{"--set", "bedrock.model=m`id`", "--set", "swap.size"}, nil, [][]string{
				{`ccboot.conf: [swap] size = "12X"`, "512M"},
				{`ccboot.conf: [aws] regoin = "us-east-1": unknown key`, "did you mean [aws] region?"},
				{`ccboot.conf: [claude-code] retries is given 2 times ("three", then "4")`},
				{`ccboot.conf: [packages] install = "git openssh-server-"`, `"remove openssh-server"`},
				{"--set bedrock.model=\"m`id`\"", "Bedrock model ID"},
				{`--set "swap.size": use section.key=value`},
			}},
	}
	var passed atomic.Int32
	total := len(cases) + 1
	t.Cleanup(func() { figure(t, "bad-config", int(passed.Load()), total) })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := newRoot(t)
			if tc.conf != "" {
				mustWrite(t, filepath.Join(root, "etc/ccboot/ccboot.conf"), tc.conf, 0o644)
			}
			before := snapshot(t, root)
			args := append([]string{"run", "--root", root, "--imds-endpoint", imds}, tc.set...)
			r := runBin(t, ccbootBin, nil, args...)
			if r.code != 3 {
				t.Fatalf("exit %d, want 3\n%s%s", r.code, r.stdout, r.stderr)
			}
			want := tc.lines
			if want == nil {
				want = [][]string{tc.want}
			}
			// Every mistake is reported, one line each, in the order given.
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if len(lines) != len(want) {
				t.Errorf("stderr has %d lines, want %d:\n%s", len(lines), len(want), r.stderr)
			}
			for i := range min(len(lines), len(want)) {
				for _, w := range want[i] {
					if !strings.Contains(lines[i], w) {
						t.Errorf("stderr line %d lacks %q:\n%s", i+1, w, r.stderr)
					}
				}
			}
			if r.stdout != "" {
				t.Errorf("a step ran: %s", r.stdout)
			}
			if d := diffTrees(before, snapshot(t, root)); len(d) > 0 {
				t.Errorf("refused config, but the root changed:\n%s", strings.Join(d, "\n"))
			}
			for _, p := range volatile {
				if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
					t.Errorf("refused config, but %s was written", p)
				}
			}
			if !t.Failed() {
				passed.Add(1)
			}
		})
	}
	t.Run("user that does not exist", func(t *testing.T) {
		t.Parallel()
		root := newRoot(t)
		mustWrite(t, filepath.Join(root, "etc/ccboot/ccboot.conf"), "[ccboot]\nuser = alice\n", 0o644)
		homeBefore := snapshot(t, filepath.Join(root, "home"))
		r := runBin(t, ccbootBin, nil, "run", "--root", root, "--imds-endpoint", imds)
		if r.code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, step := range []string{"docker-group", "aws-config", "aliases"} {
			line := stepLine(r.stdout, step)
			if !strings.Contains(line, " failed ") || !strings.Contains(line, `"alice"`) || !strings.Contains(line, "[ccboot] user") {
				t.Errorf("%s: want a failure naming alice and [ccboot] user, got:\n%s", step, line)
			}
		}
		if d := diffTrees(homeBefore, snapshot(t, filepath.Join(root, "home"))); len(d) > 0 {
			t.Errorf("wrote into /home for a user that does not exist:\n%s", strings.Join(d, "\n"))
		}
		group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
		if strings.Contains(string(group), "alice") {
			t.Errorf("group file names the missing user:\n%s", group)
		}
		if !t.Failed() {
			passed.Add(1)
		}
	})
}
