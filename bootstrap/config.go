package bootstrap

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/ini.v1"

	"github.com/ccboot/ccboot/bootstrap/bedrock"
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

	Model      string
	HaikuModel string // ANTHROPIC_DEFAULT_HAIKU_MODEL
	OpusModel  string // ANTHROPIC_DEFAULT_OPUS_MODEL
	Region     string // empty: from IMDS

	ReadOnlyProfile     string
	ElevatedProfile     string
	ReadOnlyRoleARN     string // empty: derived from the instance profile
	ElevatedRoleARN     string
	ReadOnlySessionName string
	ElevatedSessionName string

	AliasReadOnly string
	AliasElevated string

	TierMode string // TierAdvisory or TierEnforced
}

// The [tiers] modes. Advisory is today's behaviour: the tiers guard against
// the agent's mistakes. Enforced turns on what makes them hold against the
// agent itself (issue 21): only root reaches IMDS, the user has no path to root.
const (
	TierAdvisory = "advisory"
	TierEnforced = "enforced"
)

// Enforced reports whether [tiers] mode = enforced; every enforced-only
// behaviour asks this, so advisory stays unchanged.
func (c *Config) Enforced() bool { return c.TierMode == TierEnforced }

// ConfigError is one piece of bad input in the config file or a flag. The
// message is one line naming where (file and key, or flag), the value as
// given, what is wrong and what is allowed.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// ConfigErrors is every problem one pass over the config found: the file's
// in file order, then the flags' in command-line order. errors.As finds a
// *ConfigError in it.
type ConfigErrors []*ConfigError

func (e ConfigErrors) Error() string { return strings.Join(e.Lines(), "\n") }

// Unwrap lets errors.As and errors.Is see each problem.
func (e ConfigErrors) Unwrap() []error {
	out := make([]error, len(e))
	for i, p := range e {
		out[i] = p
	}
	return out
}

// Lines is one line per problem.
func (e ConfigErrors) Lines() []string {
	out := make([]string, len(e))
	for i, p := range e {
		out[i] = p.Msg
	}
	return out
}

// ConfigProblems lists the config problems err holds, one line each (nil
// when err is not about the config).
func ConfigProblems(err error) []string {
	var all ConfigErrors
	if errors.As(err, &all) {
		return all.Lines()
	}
	var one *ConfigError
	if errors.As(err, &one) {
		return []string{one.Msg}
	}
	return nil
}

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
	tierPattern    = regexp.MustCompile(`^(` + TierAdvisory + `|` + TierEnforced + `)$`)
	// packagePattern is a name apt and dnf both read as one package and
	// nothing else: Debian's grammar (a-z 0-9 + . -) joined with RPM's (also
	// upper case and _), starting with a letter or digit (a leading - is an
	// option, ? and ~ are apt patterns) and not ending in - (apt: remove).
	packagePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9+._-]{0,98}[A-Za-z0-9+._])?$`)
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
			if err := CheckWaitConditionURL(v); err != nil {
				return err
			}
			c.WaitConditionURL = v
			return nil
		}},
		{"steps", "skip", "", "Steps not to run, comma separated (reported as skipped).", func(_ *Config, v string) error {
			c.Skip = splitList(v)
			return nil
		}},
		{"packages", "install", "unzip, git, jq, nodejs, docker", "Packages to install (seed names; mapped per distro, e.g. docker -> docker.io on Debian); letters, digits and + . _ -, not ending in -.", func(_ *Config, v string) error {
			list := splitList(v)
			for _, p := range list {
				if err := checkPackageName(p); err != nil {
					return err
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
		{"swap", "path", "/swapfile", "Swap file location; an existing file there is replaced only if it is a swap file.", func(_ *Config, v string) error {
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
		{"bedrock", "model", bedrock.DefaultModel, "ANTHROPIC_MODEL: Bedrock model or inference profile ID; the default gets the Region's inference profile prefix (eu. in eu-west-1).", str(&c.Model, modelPattern, "a Bedrock model ID (letters, digits and . _ : / -), e.g. eu.anthropic.claude-sonnet-4-6")},
		{"bedrock", "haiku_model", bedrock.DefaultHaikuModel, "ANTHROPIC_DEFAULT_HAIKU_MODEL: what Claude Code's haiku alias and background tasks use; the default gets the Region's prefix (ANTHROPIC_MODEL where the Region has no profile of it). The sonnet alias follows [bedrock] model.", str(&c.HaikuModel, modelPattern, "a Bedrock model ID (letters, digits and . _ : / -), e.g. eu.anthropic.claude-haiku-4-5-20251001-v1:0")},
		{"bedrock", "opus_model", bedrock.DefaultOpusModel, "ANTHROPIC_DEFAULT_OPUS_MODEL: what Claude Code's opus alias uses; the default gets the Region's prefix (ANTHROPIC_MODEL where the Region has no profile of it).", str(&c.OpusModel, modelPattern, "a Bedrock model ID (letters, digits and . _ : / -), e.g. eu.anthropic.claude-opus-4-6-v1")},
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
		{"tiers", "mode", TierAdvisory, "advisory (the tiers guard against the agent's mistakes) or enforced (only root reaches IMDS; the user has no path to root).", str(&c.TierMode, tierPattern, "advisory or enforced")},
	}
}

// checkPackageName refuses what apt or dnf would read as more than a
// package name, saying which rule the name breaks.
func checkPackageName(p string) error {
	if packagePattern.MatchString(p) {
		return nil
	}
	q := quoteValue(p)
	switch {
	case strings.HasPrefix(p, "-"):
		return fmt.Errorf("%s starts with -, which apt and dnf read as an option; give package names only", q)
	case strings.HasSuffix(p, "-") && packagePattern.MatchString(strings.TrimRight(p, "-")):
		return fmt.Errorf("%s ends in -, which apt reads as \"remove %s\"; drop the -", q, strings.TrimRight(p, "-"))
	case strings.ContainsAny(p, "=/:"):
		return fmt.Errorf("%s holds a version, release or architecture selector (= / :); give the package name only", q)
	}
	return fmt.Errorf("%s is not a package name: letters, digits and + . _ - (at most 100), starting with a letter or digit, not ending in -", q)
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
		// Plain http only to a parsed loopback IP, never a name or a
		// 127.-prefixed host name (the WaitCondition URL's rule, issue 14).
		loopback := false
		if err == nil {
			ip := net.ParseIP(u.Hostname())
			loopback = ip != nil && ip.IsLoopback()
		}
		if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Scheme != "https" && !(u.Scheme == "http" && loopback)) {
			return errors.New("must be an https:// URL without user@, query or fragment (http:// only to a loopback IP such as 127.0.0.1)")
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

// ParseSize reads a swap size: a number with an optional K/M/G suffix (binary
// units, an optional "iB"/"B"), or 0/off for none.
func ParseSize(v string) (int64, error) {
	s := strings.TrimSpace(strings.ToLower(v))
	if s == "off" || s == "0" || s == "none" {
		return 0, nil
	}
	bad := errors.New("not a size: use e.g. 512M or 2G (between 16M and 64G), or 0/off to disable")
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

// configSource is where the config file comes from: a root (fsroot.Tree)
// or, in the fuzz test, memory.
type configSource interface {
	ReadFile(string) ([]byte, error)
	Path(string) string
}

// LoadConfig reads the INI file at name inside the system tree (missing file:
// defaults), then applies overrides ("section.key" -> value). Every problem
// found is reported at once, as ConfigErrors.
func LoadConfig(sys configSource, name string, overrides map[string]string) (*Config, error) {
	c, errs := loadConfig(sys, name, nil, overrides)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// loadConfig is LoadConfig with the raw --set arguments (section.key=value,
// in command-line order) besides the overrides map. It always returns the
// config as far as it could be read, for what still works without a valid
// one (status); errs is every problem, in the order a person fixes them.
func loadConfig(sys configSource, name string, sets []string, overrides map[string]string) (*Config, ConfigErrors) {
	c := DefaultConfig()
	l := loader{table: keys(c), c: c, bad: map[string]bool{}}
	display := sys.Path(name)
	data, err := sys.ReadFile(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		l.fail("%s: %s; make it a readable file or point --config elsewhere", display, printable(err.Error()))
	default:
		l.file(display, data)
	}
	l.dropIns(sys, name)
	l.flags(sets, overrides)
	l.crossChecks(display)
	if l.dropped > 0 {
		l.errs = append(l.errs, &ConfigError{fmt.Sprintf("%d more problems in %s and the --set flags are not listed; fix the ones above first", l.dropped, display)})
	}
	return c, l.errs
}

// maxProblems bounds the list: a file that is not a ccboot config at all
// gets a screenful, not one line per line of it.
const maxProblems = 50

// loader collects every problem instead of stopping at the first.
type loader struct {
	table []configKey
	c     *Config
	errs  ConfigErrors
	bad   map[string]bool // ids whose value was refused: no cross-checks on them
	// dropped counts problems past maxProblems.
	dropped int
}

func (l *loader) fail(format string, a ...any) {
	if len(l.errs) >= maxProblems {
		l.dropped++
		return
	}
	l.errs = append(l.errs, &ConfigError{fmt.Sprintf(format, a...)})
}

func (l *loader) key(id string) (configKey, bool) {
	for _, k := range l.table {
		if k.id() == id {
			return k, true
		}
	}
	return configKey{}, false
}

// file applies the INI file's keys. A key given twice (also in a section
// given twice, which ini.v1 merges) is an error: which one was meant is a
// guess.
func (l *loader) file(display string, data []byte) {
	f, err := ini.LoadSources(ini.LoadOptions{AllowShadows: true, AllowDuplicateShadowValues: true}, data)
	if err != nil {
		l.fail("%s: not valid INI: %s; fix the line or move the file away", display, capped(printable(strings.Join(strings.Fields(err.Error()), " "))))
		return
	}
	for _, sec := range f.Sections() {
		for _, key := range sec.Keys() {
			where := fmt.Sprintf("%s: [%s] %s", display, capped(printable(sec.Name())), capped(printable(key.Name())))
			values := key.ValueWithShadows()
			v := strings.TrimSpace(key.Value())
			k, ok := l.key(sec.Name() + "." + key.Name())
			switch {
			case !ok:
				l.fail("%s = %s: unknown key; %s", where, quoteValue(v), l.unknownHint(sec.Name(), key.Name(), true))
			case len(values) > 1:
				l.bad[k.id()] = true
				l.fail("%s is given %d times (%s); keep one", where, len(values), quoteValues(values))
			default:
				l.apply(k, v, where+" = "+quoteValue(v))
			}
		}
	}
}

// DropInSuffix: files NAME.d/*.conf are read after the config file NAME,
// in name order, a later file's key overriding an earlier one's. A baked
// image keeps its settings in ccboot.conf while each instance's UserData
// writes its own in ccboot.conf.d/ (a key twice in one file is still an
// error).
const DropInSuffix = ".d"

// dirLister is a configSource that can list a directory (fsroot.Tree).
type dirLister interface {
	ReadDirNames(string) ([]string, error)
}

func (l *loader) dropIns(sys configSource, name string) {
	lister, ok := sys.(dirLister)
	if !ok {
		return
	}
	dir := name + DropInSuffix
	names, err := lister.ReadDirNames(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		l.fail("%s: %s; make it a readable directory of *.conf files", sys.Path(dir), printable(err.Error()))
		return
	}
	for _, n := range names {
		if !strings.HasSuffix(n, ".conf") || strings.HasPrefix(n, ".") {
			continue // editor backups, temp files of an atomic write
		}
		p := dir + "/" + n
		data, err := sys.ReadFile(p)
		if err != nil {
			l.fail("%s: %s; make it a readable file or remove it", sys.Path(p), printable(err.Error()))
			continue
		}
		l.file(sys.Path(p), data)
	}
}

// flags applies --set arguments in order, then the overrides map (sorted,
// so messages come out the same every time).
func (l *loader) flags(sets []string, overrides map[string]string) {
	seen := map[string]string{}
	set := func(id, v string) {
		where := "--set " + capped(printable(id)) + "=" + quoteValue(v)
		k, ok := l.key(id)
		if !ok {
			section, name, _ := strings.Cut(id, ".")
			l.fail("%s: unknown key; %s", where, l.unknownHint(section, name, false))
			return
		}
		if prev, dup := seen[id]; dup {
			l.bad[id] = true
			l.fail("--set %s is given twice (%s); keep one", id, quoteValues([]string{prev, v}))
			return
		}
		seen[id] = v
		l.apply(k, strings.TrimSpace(v), where)
	}
	for _, s := range sets {
		id, v, ok := strings.Cut(s, "=")
		if !ok || !strings.Contains(id, ".") {
			l.fail("--set %s: use section.key=value, e.g. --set swap.size=1G", quoteValue(s))
			continue
		}
		set(strings.TrimSpace(id), v)
	}
	ids := make([]string, 0, len(overrides))
	for id := range overrides {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		set(id, overrides[id])
	}
}

func (l *loader) apply(k configKey, v, where string) {
	if err := k.set(l.c, v); err != nil {
		l.bad[k.id()] = true
		l.fail("%s: %s", where, capped(printable(err.Error())))
	}
}

// crossChecks are the rules between keys, on the values that were accepted.
func (l *loader) crossChecks(display string) {
	c := l.c
	ok := func(ids ...string) bool {
		for _, id := range ids {
			if l.bad[id] {
				return false
			}
		}
		return true
	}
	if ok("aws.readonly_profile", "aws.elevated_profile") && c.ReadOnlyProfile == c.ElevatedProfile {
		l.fail("%s: [aws] readonly_profile and elevated_profile are both %s; they must differ", display, quoteValue(c.ReadOnlyProfile))
	}
	if ok("aliases.readonly", "aliases.elevated") && c.AliasReadOnly == c.AliasElevated {
		l.fail("%s: [aliases] readonly and elevated are both %s; they must differ", display, quoteValue(c.AliasReadOnly))
	}
	if ok("aws.readonly_role_arn", "aws.elevated_role_arn") && (c.ReadOnlyRoleARN == "") != (c.ElevatedRoleARN == "") {
		l.fail("%s: set both [aws] readonly_role_arn and elevated_role_arn, or neither (to derive both from the instance profile)", display)
	}
}

// unknownHint says what was probably meant, and what the section holds.
func (l *loader) unknownHint(section, name string, file bool) string {
	form := func(k configKey) string {
		if file {
			return "[" + k.Section + "] " + k.Name
		}
		return k.id()
	}
	hint := ""
	if k, ok := nearest(section, name, l.table); ok {
		hint = "did you mean " + form(k) + "? "
	}
	var names []string
	for _, k := range l.table {
		if k.Section == section {
			names = append(names, k.Name)
		}
	}
	if len(names) > 0 {
		return hint + "keys in [" + section + "]: " + strings.Join(names, ", ")
	}
	var sections []string
	for _, k := range l.table {
		if !slices.Contains(sections, k.Section) {
			sections = append(sections, k.Section)
		}
	}
	return hint + "sections: " + strings.Join(sections, ", ")
}

// nearest is the known key a typo most likely meant: the same name in
// another section, or the key whose "section.name" is within a few edits
// (transposed letters count as one).
func nearest(section, name string, table []configKey) (configKey, bool) {
	const longest = 64 // no guesses for absurd names (and no quadratic work)
	if len(section)+len(name) > longest {
		return configKey{}, false
	}
	id := strings.ToLower(section + "." + name)
	best, bestD := configKey{}, -1
	for _, k := range table {
		d := editDistance(id, k.id())
		if strings.EqualFold(name, k.Name) || len(name) >= 4 && strings.HasPrefix(k.Name, strings.ToLower(name)) {
			d = min(d, 1) // the right key in the wrong section, or cut short
		}
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	return best, bestD >= 0 && bestD <= max(2, len(best.id())/5)
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of two neighbouring bytes.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// maxQuoted bounds how much of a value an error repeats: enough to
// recognise it, never a whole file pasted into one key.
const maxQuoted = 64

// quoteValue is v as an error shows it: quoted, control and other
// unprintable characters escaped (no terminal escapes, one line), and cut
// at maxQuoted bytes with the full length said.
func quoteValue(v string) string {
	if len(v) <= maxQuoted {
		return strconv.Quote(v)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(v[:cut]), len(v))
}

// quoteValues shows the first two of a key's values and how many more.
func quoteValues(vs []string) string {
	var q []string
	for _, v := range vs[:min(2, len(vs))] {
		q = append(q, quoteValue(strings.TrimSpace(v)))
	}
	out := strings.Join(q, ", then ")
	if len(vs) > 2 {
		out += fmt.Sprintf(", and %d more", len(vs)-2)
	}
	return out
}

// capped cuts text echoed from the input (a key name, a parser message) to
// a length an error line can carry.
func capped(s string) string { return cutText(s, 200, "") }

// cutText cuts s to at most most bytes, on a rune boundary; a cut text ends
// in "... (N bytes<note>)", N being the whole length.
func cutText(s string, most int, note string) string {
	if len(s) <= most {
		return s
	}
	cut := most
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes%s)", s[:cut], len(s), note)
}

// printable escapes control characters echoed from the file, so an error
// stays one line and cannot carry terminal escape sequences.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}

// ConfigReference lists every key with its default and help, for README and --help.
func ConfigReference() []struct{ Section, Name, Default, Help string } {
	var out []struct{ Section, Name, Default, Help string }
	for _, k := range keys(&Config{}) {
		out = append(out, struct{ Section, Name, Default, Help string }{k.Section, k.Name, k.Default, k.Help})
	}
	return out
}
