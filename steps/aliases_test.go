package steps

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

func bashrcFile(env *bootstrap.Env) string {
	return filepath.Join(env.Root, "home/ec2-user", bashrcPath)
}

func defaultAliasBlock(t *testing.T) string {
	t.Helper()
	b, err := renderAliasBlock(bootstrap.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAliasesBlockText(t *testing.T) {
	t.Parallel()
	const want = "# >>> ccboot aliases >>> (managed by ccboot; edit /etc/ccboot/ccboot.conf instead)\n" +
		"alias claude-ro='AWS_PROFILE=claudecode-readonly claude'\n" +
		"alias claude-el='AWS_PROFILE=claudecode-elevated claude'\n" +
		"# <<< ccboot aliases <<<\n"
	if got := defaultAliasBlock(t); got != want {
		t.Errorf("block:\n%s\nwant:\n%s", got, want)
	}
}

func TestAliasesFresh(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	d := convergeStep(t, env, Aliases{})
	if len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "create") || !strings.Contains(d.Diff, "+alias claude-ro=") {
		t.Errorf("first Check: %q\n%s", d.Changes, d.Diff)
	}
	p := bashrcFile(env)
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "bashrc-fresh", got)
	if uid, gid, mode := ownerOf(t, p); uid != testUID || gid != testGID || mode != 0o644 {
		t.Errorf("%s: %d:%d %v, want 1000:1000 -rw-r--r--", p, uid, gid, mode)
	}
	assertSecondApplyIsNoop(t, env, Aliases{}, p)
}

func TestAliasesIntoExisting(t *testing.T) {
	t.Parallel()
	input, err := os.ReadFile("testdata/golden/bashrc-existing.in")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		uid, gid int
		mode     os.FileMode
	}{
		{"user's file", testUID, testGID, 0o600},
		{"root-owned file keeps its owner", 0, 0, 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			p := bashrcFile(env)
			writeTestFile(t, env.Root, "home/ec2-user/.bashrc", string(input), tc.mode)
			if err := os.Chown(p, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			d := convergeStep(t, env, Aliases{})
			if len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "update") {
				t.Errorf("first Check: %q", d.Changes)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, "bashrc-existing", got)
			if !strings.HasPrefix(string(got), string(input)) {
				t.Errorf("existing content was not kept byte for byte")
			}
			if uid, gid, mode := ownerOf(t, p); int(uid) != tc.uid || int(gid) != tc.gid || mode != tc.mode {
				t.Errorf("%s: %d:%d %v, want %d:%d %v", p, uid, gid, mode, tc.uid, tc.gid, tc.mode)
			}
			assertSecondApplyIsNoop(t, env, Aliases{}, p)
		})
	}
}

func TestAliasesRewriteInPlace(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	const before = "export A=1\n# >>> ccboot aliases >>> (old text)\nalias claude-ro='old'\n# <<< ccboot aliases <<<\nexport B=2\n"
	writeTestFile(t, env.Root, "home/ec2-user/.bashrc", before, 0o644)
	env.Config.AliasReadOnly = "cro"
	d := convergeStep(t, env, Aliases{})
	if !strings.Contains(d.Diff, "-alias claude-ro='old'") || !strings.Contains(d.Diff, "+alias cro='AWS_PROFILE=claudecode-readonly claude'") {
		t.Errorf("diff:\n%s", d.Diff)
	}
	got, _ := os.ReadFile(bashrcFile(env))
	block, _ := renderAliasBlock(env.Config)
	if want := "export A=1\n" + block + "export B=2\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEditManagedBlock(t *testing.T) {
	t.Parallel()
	const block = "# >>> ccboot aliases >>> (managed)\nalias x='y'\n# <<< ccboot aliases <<<\n"
	const old = "# >>> ccboot aliases >>> (older text)\nalias x='old'\n# <<< ccboot aliases <<<\n"
	for _, tc := range []struct{ name, in, want, err string }{
		{name: "empty file", in: "", want: block},
		{name: "appended after a final newline", in: "a\n", want: "a\n" + block},
		{name: "appended with a separating newline", in: "a", want: "a\n" + block},
		{name: "replaced in place", in: "a\n" + old + "b\n", want: "a\n" + block + "b\n"},
		{name: "unchanged block is left alone", in: "a\n" + block + "b", want: "a\n" + block + "b"},
		{name: "end marker at EOF without newline", in: "a\n" + strings.TrimSuffix(old, "\n"), want: "a\n" + block},
		{name: "duplicates collapse into the first", in: "a\n" + old + "b\n" + old + "c\n" + block, want: "a\n" + block + "b\nc\n"},
		{name: "CRLF markers", in: "a\r\n# >>> ccboot aliases >>>\r\nx\r\n# <<< ccboot aliases <<<\r\nb\r\n", want: "a\r\n" + block + "b\r\n"},
		{name: "indented marker is not a marker", in: "  # >>> ccboot aliases >>>\n", want: "  # >>> ccboot aliases >>>\n" + block},
		{name: "begin without end", in: "a\n# >>> ccboot aliases >>>\nalias x=1\n", err: "line 2: ccboot aliases begin marker without an end marker"},
		{name: "two begins", in: "# >>> ccboot aliases >>>\n# >>> ccboot aliases >>>\n# <<< ccboot aliases <<<\n", err: "line 1"},
		{name: "end without begin", in: "a\n# <<< ccboot aliases <<<\n", err: "line 2: ccboot aliases end marker without a begin marker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := editManagedBlock([]byte(tc.in), block)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAliasesBeginWithoutEndIsNotTouched(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	const content = "a\n# >>> ccboot aliases >>>\nalias claude-ro=x\n"
	writeTestFile(t, env.Root, "home/ec2-user/.bashrc", content, 0o644)
	p := bashrcFile(env)
	_, checkErr := Aliases{}.Check(context.Background(), env)
	applyErr := Aliases{}.Apply(context.Background(), env)
	for _, err := range []error{checkErr, applyErr} {
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "without an end marker") {
			t.Errorf("err = %v", err)
		}
	}
	if got, _ := os.ReadFile(p); string(got) != content {
		t.Errorf("file changed: %q", got)
	}
}

// TestAliasesRealBash sources the written ~/.bashrc in a real bash and runs
// the aliases, with profile names no config would allow: each alias must
// start claude with exactly that AWS_PROFILE and run nothing else.
func TestAliasesRealBash(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	canary := filepath.Join(dir, "PWNED")
	for _, profile := range hostileValues(canary) {
		env, _ := newTestEnv(t)
		cfg := *env.Config
		cfg.ReadOnlyProfile = profile
		cfg.ElevatedProfile = "plain-profile"
		env.Config = &cfg
		if err := (Aliases{}).Apply(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		// Aliases apply to lines read after the definition, hence one per line.
		script := "shopt -s expand_aliases\n. \"$1\"\nclaude() { printf '[%s]' \"$AWS_PROFILE\" \"$@\"; }\nclaude-ro\nclaude-el\n"
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", script, "bash", bashrcFile(env))
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("profile %q: bash: %v\n%s", profile, err, out)
		}
		if want := "[" + profile + "][plain-profile]"; string(out) != want {
			t.Errorf("profile %q: got %q, want %q", profile, out, want)
		}
	}
	if _, err := os.Lstat(canary); err == nil {
		t.Fatal("an alias ran code: the canary file exists")
	}
}

func TestAliasesRejectsUnsafeAliasName(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	env.Config.AliasElevated = "x;touch y"
	_, err := Aliases{}.Check(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "[aliases]") {
		t.Fatalf("err = %v", err)
	}
}

// TestAliasesHostileBashrc: a .bashrc that is a link or a FIFO is refused,
// without blocking, and nothing it points to changes.
func TestAliasesHostileBashrc(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, root, home string)
		want  string
		is    error
	}{
		{"FIFO", func(t *testing.T, root, home string) {
			if err := syscall.Mkfifo(filepath.Join(home, ".bashrc"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "FIFO", fsroot.ErrNotRegular},
		{"link to /etc/profile", func(t *testing.T, root, home string) {
			mustSymlink(t, filepath.Join(root, "etc/profile"), filepath.Join(home, ".bashrc"))
		}, "symbolic link", fsroot.ErrSymlink},
		{"relative link out of the home", func(t *testing.T, root, home string) {
			mustSymlink(t, "../../etc/profile", filepath.Join(home, ".bashrc"))
		}, "symbolic link", fsroot.ErrSymlink},
		{"hard link to /etc/profile", func(t *testing.T, root, home string) {
			if err := os.Link(filepath.Join(root, "etc/profile"), filepath.Join(home, ".bashrc")); err != nil {
				t.Fatal(err)
			}
		}, "hard links", nil},
		{"directory", func(t *testing.T, root, home string) {
			mustMkdirOwned(t, filepath.Join(home, ".bashrc"), testUID)
		}, "directory", fsroot.ErrNotRegular},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			home := filepath.Join(env.Root, "home/ec2-user")
			writeTestFile(t, env.Root, "etc/profile", "# system profile\n", 0o644)
			tc.plant(t, env.Root, home)
			etcBefore, homeBefore := treeSnapshot(t, filepath.Join(env.Root, "etc")), treeSnapshot(t, home)

			errs := make(chan error, 2)
			go func() {
				_, err := Aliases{}.Check(context.Background(), env)
				errs <- err
				errs <- Aliases{}.Apply(context.Background(), env)
			}()
			for _, what := range []string{"Check", "Apply"} {
				select {
				case err := <-errs:
					if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "aliases: ") {
						t.Errorf("%s: err = %v, want an aliases error containing %q", what, err, tc.want)
					}
					if tc.is != nil && !errors.Is(err, tc.is) {
						t.Errorf("%s: err = %v does not wrap %v", what, err, tc.is)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s blocked on the planted .bashrc", what)
				}
			}
			assertSameSnapshot(t, etcBefore, treeSnapshot(t, filepath.Join(env.Root, "etc")))
			assertSameSnapshot(t, homeBefore, treeSnapshot(t, home))
		})
	}
}

// blockPattern finds complete managed blocks independently of the editor's
// own scanner: from a begin line to the next end line.
var blockPattern = regexp.MustCompile(`(?m)^# >>> ccboot aliases >>>[^\n]*\n(?:[^\n]*\n)*?# <<< ccboot aliases <<<[ \t\r]*(?:\n|\z)`)

// FuzzEditManagedBlock: whenever the editor accepts a file, the result has
// exactly one block, applying it again changes nothing, and the text outside
// the blocks is the same bytes as before (plus a newline when one was needed
// before an appended block).
func FuzzEditManagedBlock(f *testing.F) {
	block := "# >>> ccboot aliases >>> (managed)\nalias a='AWS_PROFILE=p claude'\n# <<< ccboot aliases <<<\n"
	for _, s := range []string{
		"", "a", "a\n", "x\n" + block + "y\n", block + block, "a\n# >>> ccboot aliases >>> old\nold\n# <<< ccboot aliases <<<",
		"a\n# >>> ccboot aliases >>>\n", "# <<< ccboot aliases <<<\n", "\r\n# >>> ccboot aliases >>>\r\n# <<< ccboot aliases <<< \r\n",
	} {
		f.Add([]byte(s), "alias-body")
	}
	f.Fuzz(func(t *testing.T, in []byte, body string) {
		if strings.Contains(body, "\n") || strings.Contains(body, "ccboot aliases") {
			body = "alias x=1" // the block's own lines never look like markers
		}
		b := "# >>> ccboot aliases >>> (managed)\n" + body + "\n# <<< ccboot aliases <<<\n"
		out, err := editManagedBlock(in, b)
		if err != nil {
			return
		}
		if n := len(blockPattern.FindAllIndex(out, -1)); n != 1 {
			t.Fatalf("%d blocks in %q", n, out)
		}
		if strings.Count(string(out), b) != 1 {
			t.Fatalf("block not written exactly once: %q", out)
		}
		again, err := editManagedBlock(out, b)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not idempotent (err %v):\nonce  %q\ntwice %q", err, out, again)
		}
		outside := func(s []byte) string { return blockPattern.ReplaceAllString(string(s), "") }
		wantOutside := outside(in)
		if !blockPattern.Match(in) && len(in) > 0 && in[len(in)-1] != '\n' {
			wantOutside += "\n"
		}
		if got := outside(out); got != wantOutside {
			t.Fatalf("content outside the block changed:\nin  %q\nout %q", in, out)
		}
		if i := strings.Index(string(out), b); !strings.HasPrefix(string(in), string(out[:i])) && string(out[:i]) != string(in)+"\n" {
			t.Fatalf("the block is not where the first one was (or at the end): %q -> %q", in, out)
		}
	})
}
