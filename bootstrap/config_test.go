package bootstrap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

func loadFrom(t *testing.T, content string, overrides map[string]string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	if content != "" {
		if err := os.MkdirAll(filepath.Join(dir, "etc/ccboot"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "etc/ccboot/ccboot.conf"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sys, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	return LoadConfig(sys, DefaultConfigPath, overrides)
}

func TestConfigDefaultsAreTheSeedValues(t *testing.T) {
	t.Parallel()
	c, err := loadFrom(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{User: "ec2-user", Model: "anthropic.claude-sonnet-4-6", SwapPath: "/swapfile", SwapBytes: 512 << 20,
		ReadOnlyProfile: "claudecode-readonly", ElevatedProfile: "claudecode-elevated",
		ReadOnlySessionName: "claudecode-readonly-session", ElevatedSessionName: "claudecode-elevated-session",
		AliasReadOnly: "claude-ro", AliasElevated: "claude-el", ClaudeVersion: DefaultClaudeCodeVersion}
	got := Config{User: c.User, Model: c.Model, SwapPath: c.SwapPath, SwapBytes: c.SwapBytes,
		ReadOnlyProfile: c.ReadOnlyProfile, ElevatedProfile: c.ElevatedProfile,
		ReadOnlySessionName: c.ReadOnlySessionName, ElevatedSessionName: c.ElevatedSessionName,
		AliasReadOnly: c.AliasReadOnly, AliasElevated: c.AliasElevated, ClaudeVersion: c.ClaudeVersion}
	if got.User != want.User || got.Model != want.Model || got.SwapBytes != want.SwapBytes || got.ReadOnlyProfile != want.ReadOnlyProfile ||
		got.ElevatedSessionName != want.ElevatedSessionName || got.AliasElevated != want.AliasElevated || got.ClaudeVersion != want.ClaudeVersion {
		t.Fatalf("defaults = %+v, want %+v", got, want)
	}
	if strings.Join(c.Packages, " ") != "unzip git jq nodejs docker" {
		t.Fatalf("packages = %v", c.Packages)
	}
}

func TestConfigFileAndOverrides(t *testing.T) {
	t.Parallel()
	c, err := loadFrom(t, "[swap]\nsize = 1G\n[bedrock]\nmodel = eu.anthropic.claude-opus-4\n[steps]\nskip = packages, claude-code\n", map[string]string{"swap.size": "off", "ccboot.user": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if c.SwapBytes != 0 || c.Model != "eu.anthropic.claude-opus-4" || c.User != "alice" || strings.Join(c.Skip, ",") != "packages,claude-code" {
		t.Fatalf("got swap=%d model=%s user=%s skip=%v", c.SwapBytes, c.Model, c.User, c.Skip)
	}
}

func TestConfigErrorsNameFileKeyAndFix(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, content string
		overrides     map[string]string
		want          []string
	}{
		{"unknown key", "[swap]\nsise = 1G\n", nil, []string{"ccboot.conf: [swap] sise = \"1G\": unknown key", "did you mean [swap] size?"}},
		{"unknown section", "[nope]\nx = 1\n", nil, []string{"[nope] x", "unknown key", "sections: ccboot, steps"}},
		{"negative swap", "[swap]\nsize = -5G\n", nil, []string{"[swap] size", "-5G", "0/off"}},
		{"huge swap", "[swap]\nsize = 9000G\n", nil, []string{"[swap] size", "64G"}},
		{"model injection", "[bedrock]\nmodel = x'$(reboot)'\n", nil, []string{"[bedrock] model", "Bedrock model ID"}},
		{"bad user", "[ccboot]\nuser = Root Beer\n", nil, []string{"[ccboot] user"}},
		{"wrong partition ARN", "[aws]\nreadonly_role_arn = arn:azure:iam::111122223333:role/x\nelevated_role_arn = arn:aws:iam::111122223333:role/y\n", nil, []string{"[aws] readonly_role_arn", "arn:aws:iam::"}},
		{"ARN of a user", "[aws]\nreadonly_role_arn = arn:aws:iam::111122223333:user/x\nelevated_role_arn = arn:aws:iam::111122223333:role/y\n", nil, []string{"readonly_role_arn"}},
		{"only one ARN", "[aws]\nreadonly_role_arn = arn:aws:iam::111122223333:role/x\n", nil, []string{"both", "elevated_role_arn"}},
		{"bad duration", "[ccboot]\nimds_timeout = forever\n", nil, []string{"[ccboot] imds_timeout", "duration"}},
		{"bad bool", "[claude-code]\nauto_update = maybe\n", nil, []string{"auto_update", "true or false"}},
		{"bad region", "[aws]\nregion = mars-1\n", nil, []string{"[aws] region"}},
		{"not INI", "[swap\n", nil, []string{"not valid INI"}},
		{"http wait condition", "[ccboot]\nwait_condition_url = http://example.com/x\n", nil, []string{"wait_condition_url", "https://"}},
		{"unknown override", "", map[string]string{"swap.sise": "1G"}, []string{"--set swap.sise", "unknown key"}},
		{"bad override", "", map[string]string{"swap.size": "lots"}, []string{"--set swap.size", "lots"}},
		{"prefix with shell syntax", "[claude-code]\nprefix = /!\n", nil, []string{"[claude-code] prefix", "/usr/local"}},
		{"swap path with a space", "", map[string]string{"swap.path": "/swap file"}, []string{"--set swap.path", "/swapfile"}},
		{"swap path under /proc", "[swap]\npath = /proc/swap\n", nil, []string{"[swap] path", "/proc"}},
		{"same profiles", "[aws]\nelevated_profile = claudecode-readonly\n", nil, []string{"must differ"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadFrom(t, tc.content, tc.overrides)
			if err == nil {
				t.Fatal("accepted")
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %T, want a *ConfigError", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("one mistake, but not one line: %q", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"512M": 512 << 20, "512MiB": 512 << 20, "2G": 2 << 30, "1g": 1 << 30, "off": 0, "0": 0, "16384K": 16 << 20} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "-1G", "1T", "1M", "99999999999999999999G", "5X"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestConfigReferenceCoversEveryKey(t *testing.T) {
	t.Parallel()
	ref := ConfigReference()
	if len(ref) != len(keys(&Config{})) || len(ref) < 20 {
		t.Fatalf("reference has %d keys", len(ref))
	}
	for _, k := range ref {
		if k.Help == "" {
			t.Errorf("%s.%s has no help text", k.Section, k.Name)
		}
	}
}

// The README documents every key; this keeps the two from drifting apart.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ConfigReference() {
		if entry := "`[" + k.Section + "] " + k.Name + "`"; !strings.Contains(string(readme), entry) {
			t.Errorf("README.md does not document %s", entry)
		}
	}
}

// loadFromSets is loadFrom with raw --set arguments, returning every problem.
func loadFromSets(t *testing.T, content string, sets []string) (*Config, ConfigErrors) {
	t.Helper()
	return loadConfig(memFile{data: []byte(content), ok: content != ""}, DefaultConfigPath, sets, nil)
}

// An image's config and an instance's drop-in: the drop-in's keys win, the
// image's others stay, files that are not *.conf (or are hidden temp files)
// are ignored, and a problem in a drop-in names that file.
func TestConfigDropInsOverrideInNameOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := func(name, content string) {
		p := filepath.Join(dir, "etc/ccboot", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("ccboot.conf", "[aws]\nregion = eu-west-1\n[swap]\nsize = 1G\n")
	w("ccboot.conf.d/50-instance.conf", "[aws]\nregion = ap-southeast-2\n[ccboot]\nwait_condition_url = https://example.invalid/wait\n")
	w("ccboot.conf.d/60-later.conf", "[aws]\nregion = us-east-2\n")
	w("ccboot.conf.d/.60-later.conf.tmp.conf", "[swap]\nsize = banana\n")
	w("ccboot.conf.d/README", "not a config\n")
	sys, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	c, err := LoadConfig(sys, DefaultConfigPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "us-east-2" || c.SwapBytes != 1<<30 || c.WaitConditionURL != "https://example.invalid/wait" {
		t.Errorf("region %q swap %d wait %q: want the last drop-in's region, the image's swap, the instance's URL", c.Region, c.SwapBytes, c.WaitConditionURL)
	}
	w("ccboot.conf.d/70-bad.conf", "[swap]\nsize = 12X\n")
	_, err = LoadConfig(sys, DefaultConfigPath, nil)
	if err == nil || !strings.Contains(err.Error(), "ccboot.conf.d/70-bad.conf: [swap] size") {
		t.Errorf("a bad drop-in: %v, want an error naming ccboot.conf.d/70-bad.conf", err)
	}
}

func TestConfigReleaseSignature(t *testing.T) {
	t.Parallel()
	c, err := loadFrom(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.ClaudeVerifySignature || c.ClaudeSigningKey != "" || c.ClaudeReleaseURL != "https://downloads.claude.ai/claude-code-releases" {
		t.Errorf("defaults: verify_signature %v, signing_key %q, release_url %q; want on, Anthropic's key, downloads.claude.ai", c.ClaudeVerifySignature, c.ClaudeSigningKey, c.ClaudeReleaseURL)
	}
	for content, want := range map[string]string{
		"[claude-code]\nsigning_key = /etc/ccboot/k.asc\nverify_signature = false\n": "signing_key is set but verify_signature = false",
		"[claude-code]\nsigning_key = etc/k.asc\n":                                   "must be a clean absolute file path",
		"[claude-code]\nsigning_key = /proc/self/fd/0\n":                             "must be a clean absolute file path",
		"[claude-code]\nverify_signature = maybe\n":                                  "must be true or false",
	} {
		if _, err := loadFrom(t, content, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", content, err, want)
		}
	}
}
