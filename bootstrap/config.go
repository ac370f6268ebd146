package bootstrap

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/ini.v1"

	"github.com/ccboot/ccboot/bootstrap/metadata"
)

// DefaultConfigPath is where UserData writes the config (under --root).
const DefaultConfigPath = "/etc/ccboot/ccboot.conf"

// DefaultClaudeCodeVersion is the @anthropic-ai/claude-code release ccboot
// installs unless told otherwise: pinned, so every instance of a fleet runs
// the same agent and an upstream release cannot change a machine unasked.
const DefaultClaudeCodeVersion = "2.1.332"

// Config is everything a run may be told. Defaults are the seed UserData's values.
type Config struct {
	User             string
	IMDSEndpoint     string
	IMDSTimeout      time.Duration
	LockTimeout      time.Duration
	WaitConditionURL string
	Skip             []string

	Packages           []string
	PackageLockTimeout time.Duration

	ClaudeVersion    string
	ClaudePrefix     string
	ClaudeAutoUpdate bool
	NpmRetries       int // download attempts
	ClaudeSource     string
	ClaudeReleaseURL string
	ClaudeRegistry   string
	ClaudeStall      time.Duration

	SwapPath  string
	SwapBytes int64 // 0 disables swap

	Model  string
	Region string // empty: from IMDS

	ReadOnlyProfile     string
	ElevatedProfile     string
	ReadOnlyRoleARN     string // empty: derived from the instance profile
	ElevatedRoleARN     string
	ReadOnlySessionName string
	ElevatedSessionName string

	AliasReadOnly string
	AliasElevated string
}

// ConfigError is bad input in the config file or a flag. The message names
// where (file and key), what is wrong and what is allowed.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// configKey is one documented setting: where it lives, its default, and how
// it lands in Config. The table is the single source for parsing, unknown-key
// detection and the README's key reference.
type configKey struct {
	Section, Name, Default, Help string
	set                          func(c *Config, v string) error
}

func (k configKey) id() string { return k.Section + "." + k.Name }

var (
	userPattern    = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	modelPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,255}$`)
	profilePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	sessionPattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	aliasPattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,63}$`)
	packagePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9+._-]{0,99}$`)
	// pathPattern keeps file paths to characters no shell, fstab or INI
	// reader treats as syntax, so a path prints and passes as one plain word.
	pathPattern    = regexp.MustCompile(`^(/[A-Za-z0-9._+@-]+)+$`)
	versionPattern = regexp.MustCompile(`^(latest|stable|[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?)$`)
	// RoleARNPattern is the shape of an IAM role ARN; group 1 is the partition.
	RoleARNPattern = regexp.MustCompile(`^arn:(aws[a-z-]*):iam::([0-9]{12}):role/([\w+=,.@/-]{1,512})$`)
)

// MinSwapBytes and MaxSwapBytes bound [swap] size: below the minimum mkswap
// refuses, above the maximum it is almost surely a typo that would fill the disk.
const (
	MinSwapBytes = 16 << 20
	MaxSwapBytes = 64 << 30
)

func matches(re *regexp.Regexp, allowed string, dst *string) func(*Config, string) error {
	return func(_ *Config, v string) error {
		if !re.MatchString(v) {
			return fmt.Errorf("must be %s", allowed)
		}
		*dst = v
		return nil
	}
}

// keys builds the table bound to c's fields.
func keys(c *Config) []configKey {
	str := func(dst *string, re *regexp.Regexp, allowed string) func(*Config, string) error {
		return matches(re, allowed, dst)
	}
	dur := func(dst *time.Duration) func(*Config, string) error {
		return func(_ *Config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > 24*time.Hour {
				return errors.New("must be a duration between 1s and 24h, e.g. 90s or 5m")
			}
			*dst = d
			return nil
		}
	}
	return []configKey{
		{"ccboot", "user", "ec2-user", "Target user: owner of ~/.aws/config and ~/.bashrc, member of group docker.", str(&c.User, userPattern, "a login name like ec2-user")},
		{"ccboot", "imds_endpoint", "", "IMDS endpoint URL; empty means the SDK default (or AWS_EC2_METADATA_SERVICE_ENDPOINT).", func(_ *Config, v string) error {
			if v == "" {
				c.IMDSEndpoint = ""
				return nil
			}
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return errors.New("must be an http:// or https:// URL such as http://169.254.169.254")
			}
			c.IMDSEndpoint = v
			return nil
		}},
		{"ccboot", "imds_timeout", "2m", "How long to keep retrying IMDS at early boot before failing.", dur(&c.IMDSTimeout)},
		{"ccboot", "lock_timeout", "10m", "How long a second ccboot waits for the one holding the lock.", dur(&c.LockTimeout)},
		{"ccboot", "wait_condition_url", "", "CloudFormation WaitConditionHandle URL to PUT the run's result to (empty: none).", func(_ *Config, v string) error {
			if v == "" {
				c.WaitConditionURL = ""
				return nil
			}
			u, err := url.Parse(v)
			if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
				return errors.New("must be an https:// URL (the WaitConditionHandle's pre-signed URL)")
			}
			c.WaitConditionURL = v
			return nil
		}},
		{"steps", "skip", "", "Steps not to run, comma separated (reported as skipped).", func(_ *Config, v string) error {
			c.Skip = splitList(v)
			return nil
		}},
		{"packages", "install", "unzip, git, jq, nodejs, docker", "Packages to install (seed names; mapped per distro, e.g. docker -> docker.io on Debian).", func(_ *Config, v string) error {
			list := splitList(v)
			for _, p := range list {
				if !packagePattern.MatchString(p) {
					return fmt.Errorf("%q is not a package name (lowercase letters, digits, + . _ -)", p)
				}
			}
			c.Packages = list
			return nil
		}},
		{"packages", "lock_timeout", "5m", "How long to wait for another process holding the package manager lock.", dur(&c.PackageLockTimeout)},
		{"claude-code", "version", DefaultClaudeCodeVersion, "Claude Code version to install: x.y.z, or stable/latest (resolved at each run and repair).", str(&c.ClaudeVersion, versionPattern, "a version like 2.1.332, stable or latest")},
		{"claude-code", "source", "release", "Where the native executable comes from: release (Anthropic's release channel) or npm (the platform package from an npm registry).", str(&c.ClaudeSource, sourcePattern, "release or npm")},
		{"claude-code", "release_url", DefaultClaudeReleaseURL, "Base URL of the release channel (VERSION/manifest.json, VERSION/PLATFORM/claude, stable, latest).", httpURL(&c.ClaudeReleaseURL)},
		{"claude-code", "registry", "https://registry.npmjs.org", "npm registry for source = npm (a CodeArtifact, Artifactory or Verdaccio mirror works).", httpURL(&c.ClaudeRegistry)},
		{"claude-code", "stall_timeout", "60s", "Abandon a download attempt (and retry) when no byte arrives for this long.", dur(&c.ClaudeStall)},
		{"claude-code", "prefix", "/usr/local", "Root-owned prefix: versions under PREFIX/lib/claude-code, the link PREFIX/bin/claude.", func(_ *Config, v string) error {
			if !pathPattern.MatchString(v) || path.Clean(v) != v {
				return errors.New("must be a clean absolute directory of letters, digits and . _ + @ - such as /usr/local")
			}
			c.ClaudePrefix = v
			return nil
		}},
		{"claude-code", "auto_update", "false", "Let Claude Code update itself (false exports DISABLE_AUTOUPDATER=1 so the pinned version stays).", boolKey(&c.ClaudeAutoUpdate)},
		{"claude-code", "retries", "3", "Download attempts on network errors and HTTP 5xx.", func(_ *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10 {
				return errors.New("must be a whole number from 1 to 10")
			}
			c.NpmRetries = n
			return nil
		}},
		{"swap", "path", "/swapfile", "Swap file location.", func(_ *Config, v string) error {
			if !pathPattern.MatchString(v) || path.Clean(v) != v || underVirtualFS(v) {
				return errors.New("must be a clean absolute file path of letters, digits and . _ + @ - outside /proc, /sys, /dev and /run, e.g. /swapfile")
			}
			c.SwapPath = v
			return nil
		}},
		{"swap", "size", "512M", "Swap file size (e.g. 512M, 2G); 0 or off disables swap management.", func(_ *Config, v string) error {
			n, err := ParseSize(v)
			if err != nil {
				return err
			}
			c.SwapBytes = n
			return nil
		}},
		{"bedrock", "model", "us.anthropic.claude-sonnet-4-6", "ANTHROPIC_MODEL: Bedrock model or inference profile ID.", str(&c.Model, modelPattern, "a Bedrock model ID (letters, digits and . _ : / -), e.g. us.anthropic.claude-sonnet-4-6")},
		{"aws", "region", "", "Region for AWS_REGION and ~/.aws/config; empty means the instance's region from IMDS.", func(_ *Config, v string) error {
			if v != "" && !metadata.ValidRegion(v) {
				return errors.New("must be a region name such as us-east-1, or empty for the instance's region")
			}
			c.Region = v
			return nil
		}},
		{"aws", "readonly_profile", "claudecode-readonly", "Profile name of the ReadOnly tier.", str(&c.ReadOnlyProfile, profilePattern, "a profile name (letters, digits, _ . -)")},
		{"aws", "elevated_profile", "claudecode-elevated", "Profile name of the Elevated tier.", str(&c.ElevatedProfile, profilePattern, "a profile name (letters, digits, _ . -)")},
		{"aws", "readonly_role_arn", "", "ReadOnly role ARN; empty derives it from the instance profile (claudecode-ec2-STACK -> claudecode-readonly-STACK).", roleARN(&c.ReadOnlyRoleARN)},
		{"aws", "elevated_role_arn", "", "Elevated role ARN; empty derives it from the instance profile (-> claudecode-elevated-STACK).", roleARN(&c.ElevatedRoleARN)},
		{"aws", "readonly_session_name", "claudecode-readonly-session", "role_session_name of the ReadOnly profile.", str(&c.ReadOnlySessionName, sessionPattern, "2-64 characters of letters, digits and + = , . @ _ -")},
		{"aws", "elevated_session_name", "claudecode-elevated-session", "role_session_name of the Elevated profile.", str(&c.ElevatedSessionName, sessionPattern, "2-64 characters of letters, digits and + = , . @ _ -")},
		{"aliases", "readonly", "claude-ro", "Alias that starts Claude Code with the ReadOnly profile.", str(&c.AliasReadOnly, aliasPattern, "a shell alias name (letters, digits, _ -)")},
		{"aliases", "elevated", "claude-el", "Alias that starts Claude Code with the Elevated profile.", str(&c.AliasElevated, aliasPattern, "a shell alias name (letters, digits, _ -)")},
	}
}

// DefaultClaudeReleaseURL is the release channel Anthropic's installer
// script (claude.ai/install.sh) downloads from.
const DefaultClaudeReleaseURL = "https://storage.googleapis.com/claude-code-dist-86c565f3-f756-42ad-8dfa-d59b1c096819/claude-code-releases"

var sourcePattern = regexp.MustCompile(`^(release|npm)$`)

// httpURL accepts an https:// URL, or http:// to a loopback host (tests, a
// local mirror behind a proxy); a trailing slash is dropped.
func httpURL(dst *string) func(*Config, string) error {
	return func(_ *Config, v string) error {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
			return errors.New("must be an https:// URL without query (http:// only to a loopback address)")
		}
		*dst = strings.TrimRight(v, "/")
		return nil
	}
}

func boolKey(dst *bool) func(*Config, string) error {
	return func(_ *Config, v string) error {
		switch strings.ToLower(v) {
		case "true", "yes", "on", "1":
			*dst = true
		case "false", "no", "off", "0":
			*dst = false
		default:
			return errors.New("must be true or false")
		}
		return nil
	}
}

func roleARN(dst *string) func(*Config, string) error {
	return func(_ *Config, v string) error {
		if v != "" {
			m := RoleARNPattern.FindStringSubmatch(v)
			if m == nil || !metadata.ValidPartition(m[1]) {
				return errors.New("must be an IAM role ARN like arn:aws:iam::123456789012:role/NAME (partition aws, aws-cn or aws-us-gov), or empty to derive it")
			}
		}
		*dst = v
		return nil
	}
}

func underVirtualFS(p string) bool {
	for _, d := range []string{"/proc", "/sys", "/dev", "/run"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

// ParseSize reads a swap size: a number with an optional K/M/G suffix (binary
// units, an optional "iB"/"B"), or 0/off for none.
func ParseSize(v string) (int64, error) {
	s := strings.TrimSpace(strings.ToLower(v))
	if s == "off" || s == "0" || s == "none" {
		return 0, nil
	}
	bad := fmt.Errorf("%q is not a size: use e.g. 512M or 2G (between 16M and 64G), or 0/off to disable", v)
	s = strings.TrimSuffix(strings.TrimSuffix(s, "b"), "i")
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1<<10, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "m"):
		mult, s = 1<<20, strings.TrimSuffix(s, "m")
	case strings.HasSuffix(s, "g"):
		mult, s = 1<<30, strings.TrimSuffix(s, "g")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > MaxSwapBytes/mult {
		return 0, bad
	}
	n *= mult
	if n < MinSwapBytes || n > MaxSwapBytes {
		return 0, bad
	}
	return n, nil
}

func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// DefaultConfig is the seed's values.
func DefaultConfig() *Config {
	c := &Config{}
	for _, k := range keys(c) {
		if err := k.set(c, k.Default); err != nil {
			panic(fmt.Sprintf("default for %s: %v", k.id(), err))
		}
	}
	return c
}

// LoadConfig reads the INI file at name inside the system tree (missing file:
// defaults), then applies overrides ("section.key" -> value, from flags).
// Every problem is a *ConfigError naming the file or flag and the key.
func LoadConfig(sys interface {
	ReadFile(string) ([]byte, error)
	Path(string) string
}, name string, overrides map[string]string) (*Config, error) {
	c := DefaultConfig()
	table := keys(c)
	byID := map[string]configKey{}
	for _, k := range table {
		byID[k.id()] = k
	}
	display := sys.Path(name)
	data, err := sys.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, &ConfigError{fmt.Sprintf("%s: %v", display, err)}
	default:
		f, err := ini.LoadSources(ini.LoadOptions{Insensitive: false, AllowShadows: false}, data)
		if err != nil {
			return nil, &ConfigError{fmt.Sprintf("%s: not valid INI: %s; fix the line or move the file away", display, printable(strings.Join(strings.Fields(err.Error()), " ")))}
		}
		for _, sec := range f.Sections() {
			if sec.Name() == ini.DefaultSection && len(sec.Keys()) == 0 {
				continue
			}
			for _, key := range sec.Keys() {
				id := sec.Name() + "." + key.Name()
				k, ok := byID[id]
				if !ok {
					return nil, &ConfigError{fmt.Sprintf("%s: unknown key [%s] %s; known keys: %s", display, printable(sec.Name()), printable(key.Name()), knownKeys(sec.Name(), table))}
				}
				if err := k.set(c, strings.TrimSpace(key.Value())); err != nil {
					return nil, &ConfigError{fmt.Sprintf("%s: [%s] %s = %q: %v", display, k.Section, k.Name, key.Value(), err)}
				}
			}
		}
	}
	ids := make([]string, 0, len(overrides))
	for id := range overrides {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		k, ok := byID[id]
		if !ok {
			return nil, &ConfigError{fmt.Sprintf("--set %s: unknown key; known keys: %s", printable(id), knownKeys("", table))}
		}
		if err := k.set(c, strings.TrimSpace(overrides[id])); err != nil {
			return nil, &ConfigError{fmt.Sprintf("--set %s=%q: %v", id, overrides[id], err)}
		}
	}
	if c.ReadOnlyProfile == c.ElevatedProfile {
		return nil, &ConfigError{fmt.Sprintf("%s: [aws] readonly_profile and elevated_profile are both %q; they must differ", display, c.ReadOnlyProfile)}
	}
	if c.AliasReadOnly == c.AliasElevated {
		return nil, &ConfigError{fmt.Sprintf("%s: [aliases] readonly and elevated are both %q; they must differ", display, c.AliasReadOnly)}
	}
	if (c.ReadOnlyRoleARN == "") != (c.ElevatedRoleARN == "") {
		return nil, &ConfigError{fmt.Sprintf("%s: set both [aws] readonly_role_arn and elevated_role_arn, or neither (to derive both from the instance profile)", display)}
	}
	return c, nil
}

// printable escapes control characters echoed from the file, so an error
// stays one line and cannot carry terminal escape sequences.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

func knownKeys(section string, table []configKey) string {
	var ids []string
	for _, k := range table {
		if section == "" || k.Section == section {
			ids = append(ids, k.id())
		}
	}
	if len(ids) == 0 {
		for _, k := range table {
			ids = append(ids, k.id())
		}
	}
	return strings.Join(ids, ", ")
}

// ConfigReference lists every key with its default and help, for README and --help.
func ConfigReference() []struct{ Section, Name, Default, Help string } {
	var out []struct{ Section, Name, Default, Help string }
	for _, k := range keys(&Config{}) {
		out = append(out, struct{ Section, Name, Default, Help string }{k.Section, k.Name, k.Default, k.Help})
	}
	return out
}
