package bootstrap

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// memFile is the config file held in memory, for LoadConfig.
type memFile struct {
	data []byte
	ok   bool
}

func (m memFile) ReadFile(string) ([]byte, error) {
	if !m.ok {
		return nil, fs.ErrNotExist
	}
	return m.data, nil
}

func (memFile) Path(name string) string { return name }

// configValue is each key's value read back from a Config, in the form the
// file takes, so an accepted config can be written out again.
func configValue(c *Config, id string) string {
	dur := func(d interface{ String() string }) string { return d.String() }
	switch id {
	case "ccboot.user":
		return c.User
	case "ccboot.imds_endpoint":
		return c.IMDSEndpoint
	case "ccboot.imds_timeout":
		return dur(c.IMDSTimeout)
	case "ccboot.lock_timeout":
		return dur(c.LockTimeout)
	case "ccboot.wait_condition_url":
		return c.WaitConditionURL
	case "steps.skip":
		return strings.Join(c.Skip, ", ")
	case "packages.install":
		return strings.Join(c.Packages, ", ")
	case "packages.lock_timeout":
		return dur(c.PackageLockTimeout)
	case "claude-code.version":
		return c.ClaudeVersion
	case "claude-code.prefix":
		return c.ClaudePrefix
	case "claude-code.auto_update":
		return strconv.FormatBool(c.ClaudeAutoUpdate)
	case "claude-code.retries":
		return strconv.Itoa(c.NpmRetries)
	case "claude-code.source":
		return c.ClaudeSource
	case "claude-code.release_url":
		return c.ClaudeReleaseURL
	case "claude-code.registry":
		return c.ClaudeRegistry
	case "claude-code.stall_timeout":
		return dur(c.ClaudeStall)
	case "swap.path":
		return c.SwapPath
	case "swap.size":
		if c.SwapBytes == 0 {
			return "off"
		}
		return strconv.FormatInt(c.SwapBytes, 10)
	case "bedrock.model":
		return c.Model
	case "bedrock.haiku_model":
		return c.HaikuModel
	case "bedrock.opus_model":
		return c.OpusModel
	case "aws.region":
		return c.Region
	case "aws.readonly_profile":
		return c.ReadOnlyProfile
	case "aws.elevated_profile":
		return c.ElevatedProfile
	case "aws.readonly_role_arn":
		return c.ReadOnlyRoleARN
	case "aws.elevated_role_arn":
		return c.ElevatedRoleARN
	case "aws.readonly_session_name":
		return c.ReadOnlySessionName
	case "aws.elevated_session_name":
		return c.ElevatedSessionName
	case "aliases.readonly":
		return c.AliasReadOnly
	case "aliases.elevated":
		return c.AliasElevated
	case "tiers.mode":
		return c.TierMode
	}
	panic("configValue: no getter for " + id)
}

// renderConfig writes c as a config file with every key set.
func renderConfig(c *Config) []byte {
	var b strings.Builder
	section := ""
	for _, k := range keys(&Config{}) {
		if k.Section != section {
			section = k.Section
			fmt.Fprintf(&b, "[%s]\n", section)
		}
		// Backquotes keep ; and # in a value (ini.v1 reads them as comments).
		fmt.Fprintf(&b, "%s = `%s`\n", k.Name, configValue(c, k.id()))
	}
	return []byte(b.String())
}

// shellSafe: the values ccboot writes unquoted into shell or INI files hold
// nothing a shell or an INI parser would read as syntax.
func shellSafe(s string) bool {
	return !strings.ContainsAny(s, "\x00\n\r'\"`$;&|<>(){}\\ \t*?[]#!~")
}

// FuzzLoadConfig feeds arbitrary files (and one --set override) to the
// config parser. Properties: it never panics; every refusal is a
// *ConfigError of one line naming the file or the flag; an accepted config
// holds only values in their documented shapes; and it round-trips:
// writing it out with every key set and reading that back gives the same
// Config and the same ConfigHash.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"[swap]\nsize = 1G\n",
		"[swap]\nsize = -1G\n",
		"[swap]\nsize = 99999999999999999999G\n",
		"[bedrock]\nmodel = us.anthropic.claude$(id)\n",
		"[bedrock]\nmodel = eu.anthropic.claude-opus-4 ; comment\n",
		"[ccboot]\nuser = ec2-user\nimds_timeout = 90s\n[aws]\nregion = eu-west-1\n",
		"[aws]\nreadonly_role_arn = arn:aws-cn:iam::111122223333:role/ro\nelevated_role_arn = arn:aws-cn:iam::111122223333:role/el\n",
		"[aws]\nreadonly_profile = a\nelevated_profile = a\n",
		"[steps]\nskip = swap, aliases\n[packages]\ninstall = git jq\n",
		"[claude-code]\nversion = latest\nprefix = /opt/claude\nauto_update = yes\nretries = 10\n",
		"[swap]\nsize = 12X\n[aws]\nregoin = us-east-1\n[packages]\ninstall = git openssh-server-\n",
		"[swap]\nsize = 1G\n[swap]\nsize = 1G\n",
		"[bedrock]\nmodel = " + strings.Repeat("\x1b[2J", 300) + "\n",
		"[swap\n", "x = 1\n", "[swap]\nsize\n", "[swap]\nsize = `1G`\n", "[swap]\nsize = \"\"\"\n1G\n\"\"\"\n",
	} {
		f.Add([]byte(s), "swap.size", "2G")
	}
	f.Add([]byte(""), "bedrock.model", "m';id;'")
	f.Add([]byte(""), "nosuch", "x")
	f.Fuzz(func(t *testing.T, data []byte, setKey, setValue string) {
		overrides := map[string]string{}
		if setKey != "" {
			overrides[setKey] = setValue
		}
		file := memFile{data: data, ok: len(data) > 0}
		c, err := LoadConfig(file, DefaultConfigPath, overrides)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("not a ConfigError: %T %v", err, err)
			}
			lines := ConfigProblems(err)
			if len(lines) == 0 || strings.Join(lines, "\n") != err.Error() {
				t.Fatalf("problems %q do not make up the error %q", lines, err)
			}
			for _, l := range lines {
				if strings.IndexFunc(l, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
					t.Fatalf("problem holds control characters (more than one line, or terminal escapes from the input): %q", l)
				}
				if !strings.Contains(l, DefaultConfigPath) && !strings.Contains(l, "--set") {
					t.Fatalf("problem names neither the file nor the flag: %q", l)
				}
				// Quoted input is capped: a line never carries a pasted file.
				if len(l) > 1500 {
					t.Fatalf("problem line of %d bytes: %.200q", len(l), l)
				}
			}
			return
		}
		for id, v := range map[string]string{
			"user": c.User, "model": c.Model, "readonly_profile": c.ReadOnlyProfile, "elevated_profile": c.ElevatedProfile,
			"alias readonly": c.AliasReadOnly, "alias elevated": c.AliasElevated, "region": c.Region,
			"role": c.ReadOnlyRoleARN + c.ElevatedRoleARN, "session": c.ReadOnlySessionName + c.ElevatedSessionName,
			"version": c.ClaudeVersion, "prefix": c.ClaudePrefix, "swap path": c.SwapPath,
		} {
			if !shellSafe(v) {
				t.Fatalf("accepted %s %q, which holds shell or INI syntax", id, v)
			}
		}
		for _, p := range c.Packages {
			if !shellSafe(p) || strings.HasPrefix(p, "-") || strings.HasSuffix(p, "-") || strings.ContainsAny(p, "=/:") {
				t.Fatalf("accepted package name %q", p)
			}
		}
		if c.SwapBytes != 0 && (c.SwapBytes < MinSwapBytes || c.SwapBytes > MaxSwapBytes) {
			t.Fatalf("accepted swap size %d outside [%d, %d]", c.SwapBytes, MinSwapBytes, MaxSwapBytes)
		}
		if c.NpmRetries < 1 || c.NpmRetries > 10 {
			t.Fatalf("accepted retries %d", c.NpmRetries)
		}
		out := renderConfig(c)
		again, err := LoadConfig(memFile{data: out, ok: true}, DefaultConfigPath, nil)
		if err != nil {
			t.Fatalf("an accepted config, written out, is refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalized(c), normalized(again)) {
			t.Fatalf("round trip changed the config:\nfirst  %+v\nsecond %+v\nfile\n%s", c, again, out)
		}
		if ConfigHash(c) != ConfigHash(again) && reflect.DeepEqual(c, again) {
			t.Fatal("same config, different hash")
		}
	})
}

// normalized treats an empty list and no list alike (the file cannot tell
// them apart).
func normalized(c *Config) Config {
	n := *c
	if len(n.Skip) == 0 {
		n.Skip = nil
	}
	if len(n.Packages) == 0 {
		n.Packages = nil
	}
	return n
}
