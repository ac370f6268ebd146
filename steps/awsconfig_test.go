package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/ini.v1"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata"
)

func awsConfigFile(env *bootstrap.Env) string {
	return filepath.Join(env.Root, "home/ec2-user", awsConfigPath)
}

func TestAWSConfigFresh(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	d := convergeStep(t, env, AWSConfig{})
	if len(d.Changes) != 2 || !strings.Contains(d.Changes[0], "create") || !strings.Contains(d.Diff, "+[profile claudecode-elevated]") {
		t.Errorf("first Check: %q\n%s", d.Changes, d.Diff)
	}
	p := awsConfigFile(env)
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "aws-config-fresh.ini", got)
	if uid, gid, mode := ownerOf(t, p); uid != testUID || gid != testGID || mode != 0o600 {
		t.Errorf("%s: %d:%d %v, want 1000:1000 -rw-------", p, uid, gid, mode)
	}
	if uid, gid, mode := ownerOf(t, filepath.Dir(p)); uid != testUID || gid != testGID || mode != os.ModeDir|0o700 {
		t.Errorf("%s: %d:%d %v, want 1000:1000 drwx------", filepath.Dir(p), uid, gid, mode)
	}
	assertSecondApplyIsNoop(t, env, AWSConfig{}, p)
}

func TestAWSConfigMergeIntoExisting(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	input, err := os.ReadFile("testdata/golden/aws-config-existing.in")
	if err != nil {
		t.Fatal(err)
	}
	p := awsConfigFile(env)
	writeTestFile(t, env.Root, "home/ec2-user/.aws/config", string(input), 0o644)
	// The user's files with root's group and loose modes: group and mode
	// are fixed (an entry owned by root itself is refused, see
	// TestAWSConfigRefusesRootOwned).
	if err := os.Chmod(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{filepath.Dir(p), p} {
		if err := os.Chown(q, testUID, 0); err != nil {
			t.Fatal(err)
		}
	}
	d := convergeStep(t, env, AWSConfig{})
	joined := strings.Join(d.Changes, "\n")
	for _, w := range []string{"chown 1000:1000", "update", "chmod " + p + " 0600"} {
		if !strings.Contains(joined, w) {
			t.Errorf("changes %q lack %q", d.Changes, w)
		}
	}
	if !strings.Contains(d.Diff, "-region = us-east-1 ; old region") || !strings.Contains(d.Diff, "+region = eu-west-1") {
		t.Errorf("diff:\n%s", d.Diff)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "aws-config-merged.ini", got)

	// Independently of the golden file: every line the user wrote, except
	// the two managed values that were wrong and the key ccboot does not
	// allow in its profiles, is still there in order.
	replaced := map[string]bool{
		"region = us-east-1 ; old region":                    true,
		"role_arn = arn:aws:iam::111122223333:role/old-role": true,
		"duration_seconds=3600":                              true,
	}
	outLines := strings.Split(string(got), "\n")
	j := 0
	for _, l := range strings.Split(string(input), "\n") {
		if replaced[l] {
			continue
		}
		for j < len(outLines) && outLines[j] != l {
			j++
		}
		if j == len(outLines) {
			t.Fatalf("input line %q is missing or out of order in:\n%s", l, got)
		}
		j++
	}
	if uid, gid, mode := ownerOf(t, filepath.Dir(p)); uid != testUID || gid != testGID || mode != os.ModeDir|0o700 {
		t.Errorf("~/.aws: %d:%d %v", uid, gid, mode)
	}
	assertSecondApplyIsNoop(t, env, AWSConfig{}, p)
}

// testSections are the managed sections for merge tests that do not need an Env.
func testSections() []awsSection {
	return []awsSection{
		{"default", [][2]string{{"region", "eu-west-1"}}},
		{"profile claudecode-readonly", [][2]string{
			{"role_arn", "arn:aws:iam::111122223333:role/claudecode-readonly-demo"},
			{"credential_source", "Ec2InstanceMetadata"},
			{"role_session_name", "claudecode-readonly-session"},
			{"region", "eu-west-1"},
		}},
		{"profile claudecode-elevated", [][2]string{
			{"role_arn", "arn:aws:iam::111122223333:role/claudecode-elevated-demo"},
			{"source_profile", "claudecode-readonly"},
			{"role_session_name", "claudecode-elevated-session"},
			{"region", "eu-west-1"},
		}},
	}
}

const mergedTestConfig = "[default]\nregion = eu-west-1\n\n[profile claudecode-readonly]\nrole_arn = arn:aws:iam::111122223333:role/claudecode-readonly-demo\ncredential_source = Ec2InstanceMetadata\nrole_session_name = claudecode-readonly-session\nregion = eu-west-1\n\n[profile claudecode-elevated]\nrole_arn = arn:aws:iam::111122223333:role/claudecode-elevated-demo\nsource_profile = claudecode-readonly\nrole_session_name = claudecode-elevated-session\nregion = eu-west-1\n"

func TestMergeAWSConfigCases(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", mergedTestConfig},
		{"already merged is byte-identical", mergedTestConfig, mergedTestConfig},
		{"different spacing kept when values match",
			strings.ReplaceAll(mergedTestConfig, " = ", "="),
			strings.ReplaceAll(mergedTestConfig, " = ", "=")},
		{"CRLF kept and used for new lines",
			"[default]\r\noutput = json\r\n",
			strings.ReplaceAll("[default]\noutput = json\nregion = eu-west-1\n"+mergedTestConfig[len("[default]\nregion = eu-west-1\n"):], "\n", "\r\n")},
		{"no trailing newline",
			"[default]\nregion=us-east-1",
			"[default]\nregion=eu-west-1\n" + mergedTestConfig[len("[default]\nregion = eu-west-1\n"):]},
		{"a managed key only some tools read as one is rewritten plainly",
			"[default]\n  REGION : us-east-1\n",
			mergedTestConfig},
		{"empty value",
			"[default]\nregion =\n",
			"[default]\nregion = eu-west-1\n" + mergedTestConfig[len("[default]\nregion = eu-west-1\n"):]},
		{"continuation lines of a managed key are replaced",
			"[default]\nregion = us-east-1\n  us-west-2\noutput = json\n",
			"[default]\nregion = eu-west-1\noutput = json\n" + mergedTestConfig[len("[default]\nregion = eu-west-1\n"):]},
		{"missing key goes after the last key, before trailing comments",
			"[default]\noutput = json\n\n# about the next section\n[profile other]\nregion = us-east-1\n",
			"[default]\noutput = json\nregion = eu-west-1\n\n# about the next section\n[profile other]\nregion = us-east-1\n\n" + mergedTestConfig[len("[default]\nregion = eu-west-1\n\n"):]},
		{"BOM and preamble comment kept",
			"\ufeff# top\n[default]\nregion = eu-west-1\n",
			"\ufeff# top\n" + mergedTestConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := mergeAWSConfig([]byte(tc.in), testSections())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got:\n%q\nwant:\n%q\n%s", got, tc.want, bootstrap.UnifiedDiff("config", []byte(tc.want), got))
			}
			again, err := mergeAWSConfig(got, testSections())
			if err != nil || string(again) != string(got) {
				t.Errorf("second merge changed the file (err %v):\n%s", err, bootstrap.UnifiedDiff("config", got, again))
			}
		})
	}
}

func TestMergeAWSConfigRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"unclosed section", "[default]\nregion = x\n[profile broken\nregion = y\n", "line 3"},
		{"empty key", "[default]\n= value\n", "line 2"},
		{"duplicate managed section", "[default]\nregion = a\n[profile x]\n[default]\n", "line 4: section [default] appears twice"},
		{"duplicate managed key", "[profile claudecode-readonly]\nrole_arn = a\nrole_arn = b\n", "line 3"},
		{"backslash continuation swallows our line", "[default]\noutput = json \\\n", "cannot edit it safely"},
		{"key before any section (found by FuzzMergeAWSConfig)", "\r\n0\n ", "line 2: a key stands before any [section]"},
		{"key without a value", "[default]\nregion\n", "line 2: a line has no = or :"},
		{"key without a value, then an indented line (found by FuzzMergeAWSConfig)", "[0]\r\n0\n ", "line 2: a line has no = or :"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := mergeAWSConfig([]byte(tc.in), testSections())
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Count(err.Error(), "fix or move it away") != 1 {
				t.Fatalf("err = %v, want one containing %q and the fix", err, tc.want)
			}
		})
	}
}

// TestMergeAWSConfigRefusesUnsafeValues: names and values are checked by
// the config, but the merge itself also refuses anything that could change
// the file's structure (a Config built by hand skips validation).
func TestMergeAWSConfigRefusesUnsafeValues(t *testing.T) {
	t.Parallel()
	for _, s := range []awsSection{
		{"profile x]\n[evil", [][2]string{{"region", "eu-west-1"}}},
		{"default", [][2]string{{"region", "eu-west-1\nrole_arn = evil"}}},
		{"default", [][2]string{{"region", ""}}},
		{"default", [][2]string{{"region = x\ny", "eu-west-1"}}},
	} {
		if out, err := mergeAWSConfig(nil, []awsSection{s}); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("%+v: err = %v, out %q", s, err, out)
		}
	}
	env, _ := newTestEnv(t)
	env.Config.ReadOnlyProfile = "ro]\n[default"
	if _, err := (AWSConfig{}).Check(context.Background(), env); err == nil {
		t.Error("a hostile profile name was accepted")
	}
}

func TestAWSConfigUnparseableFileIsNotTouched(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	const bad = "[default]\nregion = us-east-1\n[profile half\n"
	writeTestFile(t, env.Root, "home/ec2-user/.aws/config", bad, 0o600)
	p := awsConfigFile(env)
	chownTest(t, testUID, filepath.Dir(p), p)
	before := stampOf(t, p)
	_, checkErr := AWSConfig{}.Check(context.Background(), env)
	applyErr := AWSConfig{}.Apply(context.Background(), env)
	for _, err := range []error{checkErr, applyErr} {
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "fix or move it away") {
			t.Errorf("err = %v, want path, line and fix", err)
		}
	}
	if got, _ := os.ReadFile(p); string(got) != bad || stampOf(t, p) != before {
		t.Errorf("unparseable file was changed: %q", got)
	}
}

func TestAWSConfigRoleDerivation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		partition, region, profile string
	}{
		{"aws", "eu-west-1", "arn:aws:iam::111122223333:instance-profile/claudecode-ec2-demo"},
		{"aws-cn", "cn-north-1", "arn:aws-cn:iam::111122223333:instance-profile/claudecode-ec2-demo"},
		{"aws-us-gov", "us-gov-west-1", "arn:aws-us-gov:iam::111122223333:instance-profile/team/a/claudecode-ec2-demo"},
	} {
		t.Run(tc.partition, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			m := testMetadata()
			m.PartitionValue, m.RegionValue, m.ProfileARNValue = tc.partition, tc.region, tc.profile
			env.Meta = m
			convergeStep(t, env, AWSConfig{})
			got, err := os.ReadFile(awsConfigFile(env))
			if err != nil {
				t.Fatal(err)
			}
			f, err := ini.Load(got)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []struct{ section, key, value string }{
				{"profile claudecode-readonly", "role_arn", "arn:" + tc.partition + ":iam::111122223333:role/claudecode-readonly-demo"},
				{"profile claudecode-elevated", "role_arn", "arn:" + tc.partition + ":iam::111122223333:role/claudecode-elevated-demo"},
				{"profile claudecode-readonly", "region", tc.region},
				{"profile claudecode-readonly", "credential_source", "Ec2InstanceMetadata"},
				{"profile claudecode-elevated", "source_profile", "claudecode-readonly"},
				{"default", "region", tc.region},
			} {
				if v := f.Section(w.section).Key(w.key).String(); v != w.value {
					t.Errorf("[%s] %s = %q, want %q", w.section, w.key, v, w.value)
				}
			}
		})
	}
}

func TestAWSConfigDeriveErrors(t *testing.T) {
	t.Parallel()
	imdsDown := errors.New("IMDS services/partition: connection refused")
	for _, tc := range []struct {
		name  string
		meta  func(*metadata.Static)
		cause string
	}{
		{"no instance profile", func(m *metadata.Static) { m.ProfileARNValue = "" }, metadata.ErrNoInstanceProfile.Error()},
		{"wrong convention", func(m *metadata.Static) {
			m.ProfileARNValue = "arn:aws:iam::111122223333:instance-profile/my-own-profile"
		}, "does not follow the naming convention"},
		{"profile partition differs from IMDS", func(m *metadata.Static) { m.PartitionValue = "aws-cn" }, `partition "aws" but IMDS reports partition "aws-cn"`},
		{"profile account differs from IMDS", func(m *metadata.Static) { m.AccountValue = "444455556666" }, "account 111122223333 but IMDS reports account 444455556666"},
		{"stack name too long", func(m *metadata.Static) {
			m.ProfileARNValue = "arn:aws:iam::111122223333:instance-profile/claudecode-ec2-" + strings.Repeat("s", 50)
		}, "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			m := testMetadata()
			tc.meta(&m)
			env.Meta = m
			_, checkErr := AWSConfig{}.Check(context.Background(), env)
			applyErr := AWSConfig{}.Apply(context.Background(), env)
			for _, err := range []error{checkErr, applyErr} {
				if err == nil {
					t.Fatal("no error")
				}
				msg := err.Error()
				for _, w := range []string{"aws-config: cannot derive role ARNs: ", tc.cause, "[aws] readonly_role_arn", "[aws] elevated_role_arn", bootstrap.DefaultConfigPath} {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q lacks %q", msg, w)
					}
				}
			}
			if _, err := os.Lstat(filepath.Join(env.Root, "home/ec2-user/.aws")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("~/.aws created despite the error: %v", err)
			}
		})
	}
	t.Run("IMDS down", func(t *testing.T) {
		t.Parallel()
		env, _ := newTestEnv(t)
		env.Config.Region = "eu-west-1"
		env.Meta = metadata.Static{Err: imdsDown}
		_, err := AWSConfig{}.Check(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "[aws] elevated_role_arn") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestAWSConfigConfiguredARNs(t *testing.T) {
	t.Parallel()
	const ro, el = "arn:aws:iam::999988887777:role/ro", "arn:aws:iam::999988887777:role/el"
	t.Run("used as configured, even without IMDS", func(t *testing.T) {
		t.Parallel()
		env, _ := newTestEnv(t)
		env.Config.ReadOnlyRoleARN, env.Config.ElevatedRoleARN, env.Config.Region = ro, el, "us-east-2"
		env.Meta = metadata.Static{Err: errors.New("no IMDS under --root")}
		convergeStep(t, env, AWSConfig{})
		got, _ := os.ReadFile(awsConfigFile(env))
		for _, w := range []string{"role_arn = " + ro + "\n", "role_arn = " + el + "\n", "region = us-east-2\n"} {
			if !strings.Contains(string(got), w) {
				t.Errorf("missing %q in\n%s", w, got)
			}
		}
	})
	t.Run("partition must match IMDS", func(t *testing.T) {
		t.Parallel()
		env, _ := newTestEnv(t)
		env.Config.ReadOnlyRoleARN, env.Config.ElevatedRoleARN = ro, el
		m := testMetadata()
		m.PartitionValue = "aws-us-gov"
		env.Meta = m
		_, err := AWSConfig{}.Check(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "readonly_role_arn") || !strings.Contains(err.Error(), `partition "aws-us-gov"`) {
			t.Fatalf("err = %v", err)
		}
	})
}

// treeSnapshot records content, mode and owner of everything under dir
// (links recorded as their target), to prove an operation changed nothing.
func treeSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		entry := fmt.Sprintf("%v %d:%d", fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			entry += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			entry += " " + string(b)
		}
		snap[p] = entry
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func assertSameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if before[p] != v {
			t.Errorf("%s changed: %q -> %q", p, before[p], v)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s disappeared", p)
		}
	}
}

// TestAWSConfigHostileHome plants what a user (or anyone who controls the
// home) could plant to make root write elsewhere, and asserts ccboot refuses
// in Check and Apply and that nothing outside the home changed.
func TestAWSConfigHostileHome(t *testing.T) {
	t.Parallel()
	const shadow = "root:$6$secret:19000:0:99999:7:::\n"
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, root, home, outside string)
		want  string
	}{
		{"~/.aws links outside the root", func(t *testing.T, root, home, outside string) {
			mustSymlink(t, outside, filepath.Join(home, ".aws"))
		}, "symbolic link"},
		{"~/.aws links to a root-owned directory", func(t *testing.T, root, home, outside string) {
			mustSymlink(t, "../../etc/secret", filepath.Join(home, ".aws"))
		}, "symbolic link"},
		{"~/.aws/config links to /etc/shadow (absolute)", func(t *testing.T, root, home, outside string) {
			mustMkdirOwned(t, filepath.Join(home, ".aws"), testUID)
			mustSymlink(t, filepath.Join(root, "etc/shadow"), filepath.Join(home, ".aws/config"))
		}, "symbolic link"},
		{"~/.aws/config links to /etc/shadow (relative)", func(t *testing.T, root, home, outside string) {
			mustMkdirOwned(t, filepath.Join(home, ".aws"), testUID)
			mustSymlink(t, "../../../../etc/shadow", filepath.Join(home, ".aws/config"))
		}, "symbolic link"},
		{"~/.aws/config links to a file outside the root", func(t *testing.T, root, home, outside string) {
			mustMkdirOwned(t, filepath.Join(home, ".aws"), testUID)
			mustSymlink(t, filepath.Join(outside, "target"), filepath.Join(home, ".aws/config"))
		}, "symbolic link"},
		{"~/.aws/config is a hard link to /etc/shadow", func(t *testing.T, root, home, outside string) {
			mustMkdirOwned(t, filepath.Join(home, ".aws"), testUID)
			if err := os.Link(filepath.Join(root, "etc/shadow"), filepath.Join(home, ".aws/config")); err != nil {
				t.Fatal(err)
			}
		}, "hard links"},
		{"~/.aws owned by another user", func(t *testing.T, root, home, outside string) {
			mustMkdirOwned(t, filepath.Join(home, ".aws"), 2000)
		}, "owned by uid 2000, not ec2-user (uid 1000)"},
		{"~/.aws/config owned by another user", func(t *testing.T, root, home, outside string) {
			mustMkdirOwned(t, filepath.Join(home, ".aws"), testUID)
			writeTestFile(t, home, ".aws/config", "[default]\n", 0o600)
			if err := os.Chown(filepath.Join(home, ".aws/config"), 2000, 2000); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 2000"},
		{"~/.aws/config is a FIFO", func(t *testing.T, root, home, outside string) {
			mustMkdirOwned(t, filepath.Join(home, ".aws"), testUID)
			if err := syscall.Mkfifo(filepath.Join(home, ".aws/config"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"~/.aws is a file", func(t *testing.T, root, home, outside string) {
			writeTestFile(t, home, ".aws", "x", 0o600)
		}, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			root, home, outside := env.Root, filepath.Join(env.Root, "home/ec2-user"), t.TempDir()
			writeTestFile(t, root, "etc/shadow", shadow, 0o600)
			writeTestFile(t, root, "etc/secret/config", "[default]\nregion = secret\n", 0o600)
			writeTestFile(t, outside, "target", "outside\n", 0o644)
			tc.plant(t, root, home, outside)
			etcBefore, outsideBefore, homeBefore := treeSnapshot(t, filepath.Join(root, "etc")), treeSnapshot(t, outside), treeSnapshot(t, home)

			errs := make(chan error, 2)
			go func() {
				_, err := AWSConfig{}.Check(context.Background(), env)
				errs <- err
				errs <- AWSConfig{}.Apply(context.Background(), env)
			}()
			for _, what := range []string{"Check", "Apply"} {
				select {
				case err := <-errs:
					if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "aws-config: ") {
						t.Errorf("%s: err = %v, want an aws-config error containing %q", what, err, tc.want)
					}
					if tc.want == "symbolic link" && !errors.Is(err, fsroot.ErrSymlink) {
						t.Errorf("%s: err = %v does not wrap fsroot.ErrSymlink", what, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s blocked", what)
				}
			}
			assertSameSnapshot(t, etcBefore, treeSnapshot(t, filepath.Join(root, "etc")))
			assertSameSnapshot(t, outsideBefore, treeSnapshot(t, outside))
			assertSameSnapshot(t, homeBefore, treeSnapshot(t, home))
		})
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustMkdirOwned(t *testing.T, dir string, uid int) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// cliValues prints a section's keys and values as the AWS CLI and SDKs read
// them: with universal newlines. ini.v1 keeps the \r of a CRLF-terminated
// continuation line, so giving an unterminated last line its CRLF would
// look like a change to ini.v1 that no AWS tool sees.
func cliValues(kv map[string]string) string {
	out := map[string]string{}
	for k, v := range kv {
		out[k] = strings.TrimSuffix(strings.ReplaceAll(v, "\r\n", "\n"), "\r")
	}
	return fmt.Sprint(out)
}

// FuzzMergeAWSConfig: for any file the merge accepts, in either [tiers]
// mode's shape, merging is idempotent, the result parses and holds every
// managed value, every section ccboot does not manage reads back with the
// same keys and values and its lines are unchanged, and (the differential
// oracle) aws-sdk-go-v2's own loader reads the managed profiles as exactly
// ccboot's values, nothing else. Whenever VetAWSConfigFile's check passes a
// file, the SDK must read it that way too. Switching the shape of an
// accepted file and back gives the same bytes.
func FuzzMergeAWSConfig(f *testing.F) {
	seed, err := os.ReadFile("testdata/golden/aws-config-existing.in")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(seed), "", mergedTestConfig, enforcedTestConfig, "[default]\r\nregion=x\r\n", "[profile a]\nk\n  nested = 1\n",
		"# c\n; d\n[default]\nregion = us-east-1 # not a comment\nx = a=b\n", "key = before any section\n[default]",
		"[profile claudecode-readonly]\nrole_arn = x\n\n[profile claudecode-elevated]\nregion=\n",
		"[profile claudecode-readonly]\ncredential_process = /home/ec2-user/x.sh\n",
	} {
		f.Add([]byte(s))
	}
	managed := map[string]bool{}
	for _, s := range testSections() {
		managed[s.name] = true
	}
	namesManaged := func(section string) bool {
		for name := range managed {
			if headerNames("["+section+"]", name) {
				return true
			}
		}
		return false
	}
	shapes := []struct {
		name     string
		sections []awsSection
		sdkSees  func(testing.TB, []byte)
	}{
		{"advisory", testSections(), assertSDKSeesCCBoot},
		{"enforced", enforcedTestSections(), assertSDKSeesEnforced},
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		for i, shape := range shapes {
			if vetAWSConfig(in, profilesOf(shape.sections)) == nil {
				shape.sdkSees(t, in)
			}
			out, err := mergeAWSConfig(in, shape.sections)
			if err != nil {
				continue // refused: the file is left alone
			}
			again, err := mergeAWSConfig(out, shape.sections)
			if err != nil {
				t.Fatalf("%s: merge of the merged file failed: %v\ninput %q\nfirst %q", shape.name, err, in, out)
			}
			if string(again) != string(out) {
				t.Fatalf("%s: not idempotent:\ninput %q\nfirst %q\nagain %q", shape.name, in, out, again)
			}
			if err := verifyAWSConfig(out, shape.sections); err != nil {
				t.Fatalf("%s: result does not hold the managed values: %v", shape.name, err)
			}
			if err := vetAWSConfig(out, shape.sections); err != nil {
				t.Fatalf("%s: result fails the vet: %v\ninput %q\nout %q", shape.name, err, in, out)
			}
			shape.sdkSees(t, out)
			if a, b := userPart(t, in), userPart(t, out); a != b {
				t.Fatalf("%s: lines outside the managed sections changed:\ninput %q\nout %q", shape.name, in, out)
			}
			// The mode switch: the other shape takes over the merged file,
			// and switching back reads as ccboot's again, the user's lines
			// untouched. (Byte-identical only when ccboot's keys stood in
			// its order: TestAWSConfigModeSwitchBothWays.)
			switched, err := mergeAWSConfig(out, shapes[1-i].sections)
			if err != nil {
				t.Fatalf("%s: switching the merged file's mode failed: %v\nout %q", shape.name, err, out)
			}
			shapes[1-i].sdkSees(t, switched)
			back, err := mergeAWSConfig(switched, shape.sections)
			if err != nil || vetAWSConfig(back, shape.sections) != nil || userPart(t, back) != userPart(t, in) {
				t.Fatalf("%s: switching the mode there and back: %v\nout  %q\nback %q", shape.name, err, out, back)
			}
			shape.sdkSees(t, back)
			before, err := ini.LoadSources(iniLoadOptions, in)
			if err != nil {
				t.Fatalf("accepted an input ini.v1 cannot parse: %v", err)
			}
			after, err := ini.LoadSources(iniLoadOptions, out)
			if err != nil {
				t.Fatalf("result does not parse: %v", err)
			}
			for _, sec := range before.Sections() {
				if managed[sec.Name()] || namesManaged(sec.Name()) {
					continue
				}
				got, err := after.GetSection(sec.Name())
				if err != nil {
					t.Fatalf("%s: section [%s] lost:\ninput %q\nout %q", shape.name, sec.Name(), in, out)
				}
				if a, b := cliValues(sec.KeysHash()), cliValues(got.KeysHash()); a != b {
					t.Fatalf("%s: section [%s] changed: %s -> %s\ninput %q\nout %q", shape.name, sec.Name(), a, b, in, out)
				}
			}
		}
	})
}
