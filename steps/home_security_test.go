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
)

// Tests for issue 14: what a user can plant in their own home to make root
// hand over files, read too much, or leak secrets into errors.

func chownTest(t *testing.T, uid int, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Lchown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}

// checkAndApply runs Check then Apply and returns both errors.
func checkAndApply(env *bootstrap.Env, s bootstrap.Step) (checkErr, applyErr error) {
	_, checkErr = s.Check(context.Background(), env)
	return checkErr, s.Apply(context.Background(), env)
}

// TestAWSConfigRefusesRootOwned: `sudo aws configure` leaves a root-owned
// ~/.aws holding root's credentials; the user renames credentials onto
// config. Neither the directory nor the file may be taken over.
func TestAWSConfigRefusesRootOwned(t *testing.T) {
	t.Parallel()
	const secret = "aws_secret_access_key = ROOTSECRETKEY\n"
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, home string)
		path  string
	}{
		{"root-owned ~/.aws", func(t *testing.T, home string) {
			writeTestFile(t, home, ".aws/config", "[default]\n"+secret, 0o600)
			chownTest(t, 0, filepath.Join(home, ".aws"), filepath.Join(home, ".aws/config"))
		}, ".aws"},
		{"root-owned ~/.aws/config in the user's ~/.aws", func(t *testing.T, home string) {
			writeTestFile(t, home, ".aws/config", "[default]\n"+secret, 0o600)
			chownTest(t, testUID, filepath.Join(home, ".aws"))
			chownTest(t, 0, filepath.Join(home, ".aws/config"))
		}, ".aws/config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			home := filepath.Join(env.Root, "home/ec2-user")
			tc.plant(t, home)
			before := treeSnapshot(t, home)
			checkErr, applyErr := checkAndApply(env, AWSConfig{})
			for _, err := range []error{checkErr, applyErr} {
				want := []string{filepath.Join(home, tc.path) + ":", "owned by uid 0", "chown", "move it away"}
				for _, w := range want {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want it to contain %q", err, w)
					}
				}
				if err != nil && strings.Contains(err.Error(), "ROOTSECRETKEY") {
					t.Errorf("the error quotes the secret: %v", err)
				}
			}
			assertSameSnapshot(t, before, treeSnapshot(t, home))
		})
	}
}

// TestAWSConfigAdoptsWhatItCreated: a run killed between mkdir ~/.aws and
// its chown leaves it root-owned; the record of what ccboot created lets
// the next run finish the job. A later directory of the same name is not
// covered by that record.
func TestAWSConfigAdoptsWhatItCreated(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	dir := filepath.Join(env.Root, "home/ec2-user/.aws")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := bootstrap.RecordCreated(env.Sys, "/home/ec2-user/.aws", fi); err != nil {
		t.Fatal(err)
	}
	if uid, _, _ := ownerOf(t, filepath.Join(env.Root, bootstrap.CreatedPath)); uid != 0 {
		t.Errorf("record owned by %d", uid)
	}
	convergeStep(t, env, AWSConfig{})
	if uid, gid, _ := ownerOf(t, dir); uid != testUID || gid != testGID {
		t.Errorf("~/.aws %d:%d after adoption", uid, gid)
	}

	// Same name, new inode, root-owned: refused.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, dir, "credentials", "[default]\n", 0o600)
	if _, err := (AWSConfig{}).Check(context.Background(), env); err == nil || !strings.Contains(err.Error(), "owned by uid 0") {
		t.Errorf("a new root-owned ~/.aws was accepted: %v", err)
	}
}

// TestAWSConfigRecordsWhatItCreates: a fresh ~/.aws is recorded by inode
// before it is chowned.
func TestAWSConfigRecordsWhatItCreates(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	convergeStep(t, env, AWSConfig{})
	fi, err := os.Lstat(filepath.Join(env.Root, "home/ec2-user/.aws"))
	if err != nil {
		t.Fatal(err)
	}
	if !bootstrap.CreatedByCCBoot(env.Sys, "/home/ec2-user/.aws", fi) {
		t.Error("the ~/.aws ccboot created is not in the record")
	}
}

// TestAWSConfigErrorsNameLineNotContent: a malformed line holding a secret
// is reported by file and line number, never quoted.
func TestAWSConfigErrorsNameLineNotContent(t *testing.T) {
	t.Parallel()
	const secret = "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"
	for _, content := range []string{
		"[default]\naws_secret_access_key " + secret + "\n",
		"aws_secret_access_key = " + secret + "\n[default]\n",
		"[default]\n[" + secret + "\n",
		"[default]\n= " + secret + "\n",
	} {
		env, _ := newTestEnv(t)
		home := filepath.Join(env.Root, "home/ec2-user")
		writeTestFile(t, home, ".aws/config", content, 0o600)
		chownTest(t, testUID, filepath.Join(home, ".aws"), filepath.Join(home, ".aws/config"))
		checkErr, applyErr := checkAndApply(env, AWSConfig{})
		for _, err := range []error{checkErr, applyErr} {
			if err == nil || !strings.Contains(err.Error(), filepath.Join(home, ".aws/config")) || !strings.Contains(err.Error(), "line ") {
				t.Errorf("%q: err = %v, want the file and a line number", content, err)
			}
			if err != nil && strings.Contains(err.Error(), secret[:10]) {
				t.Errorf("%q: the error quotes the line: %v", content, err)
			}
		}
	}
	// ini.v1's own errors quote the line; what ccboot reports must not.
	for _, err := range []error{
		ini.ErrDelimiterNotFound{Line: "aws_secret_access_key " + secret},
		ini.ErrEmptyKeyName{Line: "= " + secret},
		errors.New("missing closing key quote from \"" + secret + "\" to \"x\""),
		errors.New("unclosed section: [" + secret + "\x1b]0;title\x07"),
	} {
		lines := []iniLine{{text: "[default]"}, {text: "aws_secret_access_key " + secret}}
		got := iniErrorText(err, lines)
		if strings.Contains(got, secret[:10]) || strings.ContainsAny(got, "\x1b\x07") {
			t.Errorf("iniErrorText(%q) = %q", err, got)
		}
		if _, ok := err.(ini.ErrDelimiterNotFound); ok && got != "line 2: key-value delimiter not found" {
			t.Errorf("iniErrorText(%q) = %q, want the line number", err, got)
		}
	}
}

// TestHomeFilesOverTheBoundAreNotRead: a sparse 3 GiB ~/.bashrc and a
// ~/.aws/config with a 20 MB line are refused from their fstat, quickly,
// without a byte read or written.
func TestHomeFilesOverTheBoundAreNotRead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		file string
		make func(t *testing.T, p string)
		step bootstrap.Step
	}{
		{"sparse 3 GiB ~/.bashrc", ".bashrc", func(t *testing.T, p string) {
			writeTestFile(t, filepath.Dir(p), filepath.Base(p), "# bashrc\n", 0o644)
			if err := os.Truncate(p, 3<<30); err != nil {
				t.Fatal(err)
			}
		}, Aliases{}},
		{"20 MB line in ~/.aws/config", ".aws/config", func(t *testing.T, p string) {
			writeTestFile(t, filepath.Dir(p), filepath.Base(p), "[default]\nx = "+strings.Repeat("A", 20<<20)+"\n", 0o600)
			chownTest(t, testUID, filepath.Dir(p))
		}, AWSConfig{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			home := filepath.Join(env.Root, "home/ec2-user")
			p := filepath.Join(home, tc.file)
			tc.make(t, p)
			chownTest(t, testUID, p)
			before := statSnapshot(t, home)
			start := time.Now()
			checkErr, applyErr := checkAndApply(env, tc.step)
			for _, err := range []error{checkErr, applyErr} {
				if !errors.Is(err, fsroot.ErrTooLarge) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "move it away") {
					t.Errorf("err = %v, want a refusal naming %s", err, p)
				}
				if err != nil && len(err.Error()) > 600 {
					t.Errorf("error is %d bytes long", len(err.Error()))
				}
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("refusal took %s (was the file read?)", took)
			}
			if after := statSnapshot(t, home); after != before {
				t.Errorf("the home changed:\n%s\n%s", before, after)
			}
		})
	}
}

// statSnapshot describes every entry under dir by lstat alone (inode,
// size, blocks on disk, mtime, mode, owner), for files too big to hash.
func statSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s ino=%d size=%d blocks=%d mtime=%d %v %d:%d\n", p, st.Ino, st.Size, st.Blocks, fi.ModTime().UnixNano(), fi.Mode(), st.Uid, st.Gid)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
