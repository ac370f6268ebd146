package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// problems loads content with the raw --set arguments and returns every
// problem line.
func problems(t *testing.T, content string, sets ...string) []string {
	t.Helper()
	cfg, errs := loadFromSets(t, content, sets)
	if cfg == nil {
		t.Fatal("loadConfig returned no config")
	}
	for _, e := range errs {
		if strings.ContainsAny(e.Msg, "\n\r\x1b\x07") {
			t.Errorf("problem holds control characters: %q", e.Msg)
		}
	}
	return errs.Lines()
}

func TestConfigReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	conf := "[swap]\nsize = 12X\n[aws]\nregoin = us-east-1\n[packages]\ninstall = git, openssh-server-\n[ccboot]\nlock_timeout = 5m\nlock_timeout = 6m\n"
	got := problems(t, conf, "swapsize=1G", "bedrock.model=a;b", "swap.path=/swapfile", "swap.path=/swap2")
	want := []string{
		`/etc/ccboot/ccboot.conf: [swap] size = "12X": not a size`,
		`/etc/ccboot/ccboot.conf: [aws] regoin = "us-east-1": unknown key; did you mean [aws] region?`,
		`/etc/ccboot/ccboot.conf: [packages] install = "git, openssh-server-": "openssh-server-" ends in -, which apt reads as "remove openssh-server"`,
		`/etc/ccboot/ccboot.conf: [ccboot] lock_timeout is given 2 times ("5m", then "6m"); keep one`,
		`--set "swapsize=1G": use section.key=value`,
		`--set bedrock.model="a;b": must be a Bedrock model ID`,
		`--set swap.path is given twice ("/swapfile", then "/swap2"); keep one`,
	}
	if len(got) != len(want) {
		t.Fatalf("%d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d:\n got %s\nwant %s...", i+1, got[i], want[i])
		}
	}
	// The public API gives the same list, as an error errors.As understands.
	_, err := LoadConfig(memFile{data: []byte(conf), ok: true}, DefaultConfigPath, nil)
	var ce *ConfigError
	if !errors.As(err, &ce) || len(ConfigProblems(err)) != 4 {
		t.Fatalf("LoadConfig: %v", err)
	}
}

func TestConfigDidYouMean(t *testing.T) {
	t.Parallel()
	cases := []struct{ conf, want string }{
		{"[aws]\nregoin = us-east-1\n", "did you mean [aws] region?"},
		{"[swap]\nsizee = 1G\n", "did you mean [swap] size?"},
		{"[swapp]\nsize = 1G\n", "did you mean [swap] size?"},
		{"[swap]\nregion = us-east-1\n", "did you mean [aws] region?"},          // right key, wrong section
		{"[Swap]\nSize = 1G\n", "did you mean [swap] size?"},                    // case
		{"[aws]\nreadonly_role = x\n", "did you mean [aws] readonly_role_arn?"}, // long ids allow more edits
		{"[aws]\ncolour = blue\n", "keys in [aws]: region, readonly_profile"},
		{"[nope]\nzzz = 1\n", "sections: ccboot, steps, packages"},
	}
	for _, tc := range cases {
		got := problems(t, tc.conf)
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%q: got %q, want one problem with %q", tc.conf, got, tc.want)
		}
	}
	// A name nothing like a key gets no guess.
	for _, conf := range []string{"[aws]\ncolour = blue\n", "[nope]\nzzz = 1\n"} {
		if got := problems(t, conf); strings.Contains(got[0], "did you mean") {
			t.Errorf("%q: guessed %q", conf, got[0])
		}
	}
	if got := problems(t, "", "aws.regoin=us-east-1"); len(got) != 1 || !strings.Contains(got[0], "--set aws.regoin=\"us-east-1\": unknown key; did you mean aws.region?") {
		t.Errorf("--set typo: %q", got)
	}
}

func TestConfigEditDistance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"region", "region", 0}, {"regoin", "region", 1}, {"sizee", "size", 1}, {"swap", "aws", 3}, {"", "abc", 3}, {"kitten", "sitting", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// Values are echoed escaped and capped: a key holding a pasted file or
// terminal escapes gives one short line.
func TestConfigQuotesValuesSafely(t *testing.T) {
	t.Parallel()
	value := strings.Repeat("\x1b[2J\x07", 2000) // 10 000 bytes of screen clears and bells
	got := problems(t, "[bedrock]\nmodel = "+value+"\n")
	if len(got) != 1 {
		t.Fatalf("problems: %q", got)
	}
	line := got[0]
	if len(line) > 400 || !strings.Contains(line, `"\x1b[2J\a\x1b[2J\a`) || !strings.Contains(line, "... (10000 bytes)") {
		t.Fatalf("value not escaped and capped (%d bytes): %q", len(line), line)
	}
	long := strings.Repeat("k", 5000)
	got = problems(t, "[aws]\n"+long+" = 1\n")
	if len(got) != 1 || len(got[0]) > 600 || !strings.Contains(got[0], "(5000 bytes)") {
		t.Fatalf("key name not capped: %.300q", got)
	}
}

func TestConfigPackageNames(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"git", "g++", "libstdc++6", "docker.io", "python3.11", "NetworkManager", "perl-Data-Dumper", "R", "nodejs22", "python3-ruamel_yaml"} {
		if got := problems(t, "[packages]\ninstall = "+ok+"\n"); len(got) != 0 {
			t.Errorf("%s refused: %q", ok, got)
		}
	}
	for _, tc := range []struct{ name, rule string }{
		{"openssh-server-", `ends in -, which apt reads as "remove openssh-server"`},
		{"git--", `ends in -, which apt reads as "remove git"`},
		{"-oDebug::pkgProblemResolver=1", "starts with -, which apt and dnf read as an option"},
		{"nginx=1.24.0-1", "version, release or architecture selector"},
		{"nginx/bookworm-backports", "version, release or architecture selector"},
		{"libc6:i386", "version, release or architecture selector"},
		{"?installed", "not a package name"},
		{"~nvim", "not a package name"},
		{"task^", "not a package name"},
		{"lib*", "not a package name"},
		{strings.Repeat("a", 101), "at most 100"},
	} {
		got := problems(t, "[packages]\ninstall = unzip "+tc.name+"\n")
		if len(got) != 1 || !strings.Contains(got[0], "[packages] install") || !strings.Contains(got[0], tc.rule) {
			t.Errorf("%s: got %q, want one problem naming [packages] install and %q", tc.name, got, tc.rule)
		}
	}
}

// Cross-key rules run only on accepted values: one mistake, one problem.
func TestConfigCrossChecksSkipRefusedKeys(t *testing.T) {
	t.Parallel()
	got := problems(t, "[aws]\nreadonly_role_arn = arn:aws:iam::1:role/x\n")
	if len(got) != 1 || !strings.Contains(got[0], "readonly_role_arn") {
		t.Fatalf("got %q, want only the bad ARN", got)
	}
	got = problems(t, "[aws]\nreadonly_role_arn = arn:aws:iam::111122223333:role/x\n")
	if len(got) != 1 || !strings.Contains(got[0], "set both") {
		t.Fatalf("got %q, want the both-or-neither rule", got)
	}
}

// Open reports the config's problems and unknown steps together; with
// BadConfigOK it opens anyway (for status) but refuses to converge.
func TestOpenCollectsProblemsAndRefusesToConvergeWithThem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc/ccboot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/ccboot/ccboot.conf"), []byte("[steps]\nskip = nosuch\n[swap]\nsize = 12X\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{Root: dir, ReadOnly: true, Sets: []string{"swap.path=relative"}}
	_, err := Open(opts)
	got := ConfigProblems(err)
	if len(got) != 3 || !strings.Contains(got[0], "[swap] size") || !strings.Contains(got[1], "--set swap.path") || !strings.Contains(got[2], `unknown step "nosuch"`) {
		t.Fatalf("Open: %q", got)
	}
	opts.BadConfigOK = true
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.ConfigErr()) != 3 || s.Env.Config.SwapBytes != DefaultConfig().SwapBytes {
		t.Fatalf("session: %q, swap %d; want the problems and the defaults", s.ConfigErr().Lines(), s.Env.Config.SwapBytes)
	}
	if _, err := s.Converge(context.Background(), ModeRun, nil, nil); len(ConfigProblems(err)) != 3 {
		t.Fatalf("Converge with a broken config: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("wrote into the root: %v", entries)
	}
}

// A file that is not a ccboot config at all gets a bounded list, and a key
// or section given many times one line.
func TestConfigProblemListIsBounded(t *testing.T) {
	t.Parallel()
	got := problems(t, "[swap]\n"+strings.Repeat("size = 1G\n", 1000)+strings.Repeat("[x]\nk = v\n", 10)+"[aws]\n"+strings.Repeat("k = v\n", 1000))
	if len(got) != 3 || !strings.Contains(got[0], `[swap] size is given 1000 times ("1G", then "1G", and 998 more)`) {
		t.Fatalf("got %d problems: %.300q", len(got), got)
	}
	var conf strings.Builder
	for i := range 500 {
		fmt.Fprintf(&conf, "[s%d]\nk = v\n", i)
	}
	got = problems(t, conf.String(), "nope")
	if len(got) != maxProblems+1 || !strings.HasPrefix(got[maxProblems], "451 more problems in /etc/ccboot/ccboot.conf and the --set flags are not listed") {
		t.Fatalf("got %d problems, last %q", len(got), got[len(got)-1])
	}
}
