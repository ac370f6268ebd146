package inventory

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

const testID = "i-0123456789abcdef0"

func testFacts() Facts {
	return Facts{
		CcbootVersion: "v1.4.0", ClaudeCodeVersion: "2.1.332", TierMode: "enforced",
		Run: Run{Mode: "repair", Result: RunFailed, Time: time.Date(2026, 12, 1, 10, 11, 12, 999, time.FixedZone("x", 3600)),
			FailedSteps: []string{"aws-config", "aliases"}},
		Doctor: &Doctor{Result: DoctorFailed, Time: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), FailedChecks: []string{"readonly-profile"}},
	}
}

func openRoot(t *testing.T) (string, *fsroot.Tree) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the inventory is root's")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "var/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	sys, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	return dir, sys
}

// The file ccboot writes is what the SSM agent's custom gatherer accepts,
// read back as generic JSON and checked rule by rule against AWS's
// documented limits (see the package comment for the sources).
func TestItemIsWhatTheAgentAccepts(t *testing.T) {
	t.Parallel()
	data, err := Build(testFacts()).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 3 {
		t.Errorf("top-level keys %v, want SchemaVersion, TypeName, Content only", raw)
	}
	tn, _ := raw["TypeName"].(string)
	if !regexp.MustCompile(`^Custom:[A-Za-z0-9_.-]+$`).MatchString(tn) || len(tn) > 100 || tn != "Custom:ccboot" {
		t.Errorf("TypeName %q", tn)
	}
	if sv, _ := raw["SchemaVersion"].(string); !regexp.MustCompile(`^([0-9]{1,6})(\.[0-9]{1,6})$`).MatchString(sv) {
		t.Errorf("SchemaVersion %q", sv)
	}
	content, ok := raw["Content"].(map[string]any)
	if !ok || len(content) == 0 || len(content) > 50 {
		t.Fatalf("Content %v: want one object of at most 50 attributes", raw["Content"])
	}
	for k, v := range content {
		s, ok := v.(string)
		if !ok || len(k) == 0 || len(k) > 64 || len(s) > 4096 {
			t.Errorf("attribute %q = %#v: want a string, name 1..64, value <= 4096", k, v)
		}
	}
	want := map[string]string{
		"CcbootVersion": "v1.4.0", "ClaudeCodeVersion": "2.1.332", "TierMode": "enforced",
		"LastRunMode": "repair", "LastRunResult": "failed", "LastRunTime": "2026-12-01T09:11:12Z",
		"FailedSteps": "aws-config,aliases", "DoctorResult": "failed", "DoctorTime": "2026-12-01T09:00:00Z",
		"DoctorFailedChecks": "readonly-profile",
	}
	for k, v := range want {
		if content[k] != v {
			t.Errorf("%s = %q, want %q", k, content[k], v)
		}
	}
	if len(content) != len(want) {
		t.Errorf("Content has %d attributes, want %d: %v", len(content), len(want), content)
	}
	// Times as the agent writes CaptureTime: UTC, seconds, Z.
	for _, k := range []string{"LastRunTime", "DoctorTime"} {
		if s := content[k].(string); !ValidTime(s) {
			t.Errorf("%s %q does not match CaptureTime's pattern", k, s)
		}
	}
	if err := Validate(data); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// Validate refuses each thing the agent refuses, so the test above cannot
// pass on a validator that accepts everything.
func TestValidateRefusesWhatTheAgentDrops(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 4097)
	for name, file := range map[string]string{
		"not json":            `{`,
		"no type name":        `{"SchemaVersion":"1.0","Content":{"a":"b"}}`,
		"AWS type":            `{"SchemaVersion":"1.0","TypeName":"AWS:ccboot","Content":{"a":"b"}}`,
		"type name too long":  `{"SchemaVersion":"1.0","TypeName":"Custom:` + strings.Repeat("a", 94) + `","Content":{"a":"b"}}`,
		"schema version 1":    `{"SchemaVersion":"1","TypeName":"Custom:x","Content":{"a":"b"}}`,
		"schema version text": `{"SchemaVersion":"v1.0","TypeName":"Custom:x","Content":{"a":"b"}}`,
		"no content":          `{"SchemaVersion":"1.0","TypeName":"Custom:x"}`,
		"content a string":    `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":"b"}`,
		"entry not object":    `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":[{"a":"b"},"c"]}`,
		"number value":        `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":{"a":1}}`,
		"null value":          `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":{"a":null}}`,
		"empty name":          `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":{"":"b"}}`,
		"name too long":       `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":{"` + strings.Repeat("n", 65) + `":"b"}}`,
		"value too long":      `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":{"a":"` + long + `"}}`,
		"51 attributes":       `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":{` + attrs(51) + `}}`,
	} {
		if err := Validate([]byte(file)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, file := range map[string]string{
		"object":        `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":{"a":"b"}}`,
		"list":          `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":[{"a":"b"},{"a":"c"}]}`,
		"50 attributes": `{"SchemaVersion":"1.0","TypeName":"Custom:x","Content":{` + attrs(50) + `}}`,
	} {
		if err := Validate([]byte(file)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for s, ok := range map[string]bool{"2026-12-01T09:11:12Z": true, "2026-12-01T09:11:12.5Z": false, "2026-12-01T09:11:12+01:00": false, "2026-13-01T09:11:12Z": false} {
		if ValidTime(s) != ok {
			t.Errorf("ValidTime(%q) = %v", s, !ok)
		}
	}
}

func attrs(n int) string {
	var b []string
	for i := range n {
		b = append(b, `"k`+strings.Repeat("x", i)+`":"v"`)
	}
	return strings.Join(b, ",")
}

// No text of anyone else's passes into the inventory: a version that is
// not a version, names that are not ccboot's, a mode that is not one.
func TestBuildCopiesNoForeignText(t *testing.T) {
	t.Parallel()
	f := testFacts()
	f.CcbootVersion = "v1\nAKIASECRET"
	f.ClaudeCodeVersion = `2.1.332" ; rm -rf /`
	f.TierMode = "enforced\x1b[2J"
	f.Run.FailedSteps = []string{"aws-config", "aws-config: refusing /home/ec2-user/.aws/config: it is a symbolic link to \"AKIASECRET\"", "ALIASES"}
	f.Doctor.FailedChecks = []string{"readonly-profile", "AccessDenied for AKIASECRET"}
	data, err := Build(f).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"AKIASECRET", "rm -rf", "\\u001b", "refusing", "ALIASES"} {
		if strings.Contains(string(data), bad) {
			t.Errorf("the inventory holds %q:\n%s", bad, data)
		}
	}
	c := Build(f).Content
	if c["CcbootVersion"] != "unknown" || c["ClaudeCodeVersion"] != "unknown" || c["TierMode"] != "" || c["FailedSteps"] != "aws-config" || c["DoctorFailedChecks"] != "readonly-profile" {
		t.Errorf("content %v", c)
	}
	none := Build(Facts{CcbootVersion: "dev", Run: Run{Result: RunNone}}).Content
	if none["DoctorResult"] != DoctorNotRun || none["LastRunTime"] != "" || none["ClaudeCodeVersion"] != "" || none["LastRunResult"] != RunNone {
		t.Errorf("no run, no doctor: %v", none)
	}
}

func ino(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// Write creates the agent's folders root's alone, writes atomically, and
// leaves an unchanged file's inode alone; existing folders keep their mode.
func TestWriteAtomicAndNoopWhenUnchanged(t *testing.T) {
	t.Parallel()
	dir, sys := openRoot(t)
	it := Build(testFacts())
	file, changed, err := Write(sys, testID, it)
	if err != nil || !changed {
		t.Fatalf("first write: changed %v, %v", changed, err)
	}
	if want := "/var/lib/amazon/ssm/" + testID + "/inventory/custom/ccboot.json"; file != want {
		t.Errorf("file %s, want %s", file, want)
	}
	host := filepath.Join(dir, file)
	for _, p := range []string{"var/lib/amazon", "var/lib/amazon/ssm", "var/lib/amazon/ssm/" + testID + "/inventory/custom"} {
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want a 0700 directory", p, fi.Mode(), err)
		}
	}
	fi, _ := os.Lstat(host)
	if uid, gid := fsroot.Owner(fi); fi.Mode().Perm() != 0o600 || uid != 0 || gid != 0 {
		t.Errorf("file %v %d:%d, want 0600 root:root", fi.Mode(), uid, gid)
	}
	before := ino(t, host)
	if _, changed, err := Write(sys, testID, it); err != nil || changed {
		t.Errorf("same item again: changed %v, %v", changed, err)
	}
	if ino(t, host) != before {
		t.Error("an unchanged item replaced the file")
	}
	f := testFacts()
	f.Run.Result, f.Run.FailedSteps = RunOK, nil
	if _, changed, err := Write(sys, testID, Build(f)); err != nil || !changed {
		t.Fatalf("new item: changed %v, %v", changed, err)
	}
	if ino(t, host) == before {
		t.Error("a changed item was written in place, not renamed over the file")
	}
	entries, _ := os.ReadDir(filepath.Dir(host))
	if len(entries) != 1 {
		t.Errorf("the agent's folder holds %v, want only ccboot.json (no temp file)", entries)
	}
	data, _ := os.ReadFile(host)
	if err := Validate(data); err != nil || !strings.Contains(string(data), `"LastRunResult": "ok"`) {
		t.Errorf("%v\n%s", err, data)
	}

	// The agent made its folder first (another mode): ccboot leaves it so.
	other := filepath.Join(dir, "var/lib/amazon/ssm/i-0fedcba9876543210/inventory/custom")
	if err := os.MkdirAll(other, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Write(sys, "i-0fedcba9876543210", it); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(other); fi.Mode().Perm() != 0o750 {
		t.Errorf("the agent's folder became %v", fi.Mode())
	}
}

// Security: a link anywhere on the way to the agent's folder must not
// redirect root's write, here into /etc/cron.d of the same root (a relative
// link, which os.Root alone would follow since it stays inside the root).
func TestWriteRefusesLinkedFolder(t *testing.T) {
	t.Parallel()
	for _, link := range []string{
		"var/lib/amazon/ssm/" + testID + "/inventory/custom",
		"var/lib/amazon/ssm/" + testID,
		"var/lib/amazon",
	} {
		dir, sys := openRoot(t)
		target := filepath.Join(dir, "etc/cron.d")
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(filepath.Dir(p), target)
		if err := os.Symlink(rel, p); err != nil {
			t.Fatal(err)
		}
		// The deeper links need the folders below them at the target.
		if err := os.MkdirAll(filepath.Join(dir, "var/lib/amazon/ssm/"+testID+"/inventory/custom"), 0o700); err != nil {
			t.Fatal(err)
		}
		_, _, err := Write(sys, testID, Build(testFacts()))
		if !errors.Is(err, fsroot.ErrSymlink) {
			t.Errorf("%s linked: err %v, want a refusal of the link", link, err)
		}
		_ = filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				t.Errorf("%s linked: root wrote %s", link, p)
			}
			return nil
		})
		if _, _, err := Read(sys, testID); err == nil {
			t.Errorf("%s linked: Read followed the link", link)
		}
	}
}

// Security: a folder on the way that a user owns, or that others may write,
// is refused: its owner could swap an entry for a link between the check
// and the write.
func TestWriteRefusesFolderAUserControls(t *testing.T) {
	t.Parallel()
	for name, fix := range map[string]func(string) error{
		"owned by uid 1000": func(p string) error { return os.Chown(p, 1000, 1000) },
		"mode 0777":         func(p string) error { return os.Chmod(p, 0o777) },
	} {
		dir, sys := openRoot(t)
		custom := filepath.Join(dir, "var/lib/amazon/ssm", testID, "inventory/custom")
		if err := os.MkdirAll(custom, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := fix(filepath.Join(dir, "var/lib/amazon/ssm", testID, "inventory")); err != nil {
			t.Fatal(err)
		}
		_, _, err := Write(sys, testID, Build(testFacts()))
		if err == nil || strings.Count(err.Error(), "\n") > 0 || !strings.Contains(err.Error(), "rerun") {
			t.Errorf("%s: err %v, want a one-line refusal naming the fix", name, err)
		}
		if _, err := os.Lstat(filepath.Join(custom, FileName)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the file was written", name)
		}
	}
}

// Without an instance ID (no IMDS) there is no agent folder to name:
// nothing is written. An ID that is not one is refused, never a path.
func TestWriteNeedsAnInstanceID(t *testing.T) {
	t.Parallel()
	dir, sys := openRoot(t)
	if _, _, err := Write(sys, "", Build(testFacts())); !errors.Is(err, ErrNoInstanceID) {
		t.Errorf("no ID: %v", err)
	}
	for _, id := range []string{"../../../etc", "i-0123/../../x", "i-XYZ", "i-0123456789abcdef0/.."} {
		if _, _, err := Write(sys, id, Build(testFacts())); err == nil {
			t.Errorf("ID %q accepted", id)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "var/lib/amazon")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("something was created without a valid instance ID")
	}
}

// Refresh carries doctor's recorded result; the record is root's alone.
func TestRefreshCarriesDoctorsRecord(t *testing.T) {
	t.Parallel()
	dir, sys := openRoot(t)
	facts := func() (Facts, error) {
		return Facts{CcbootVersion: "dev", TierMode: "advisory", Run: Run{Mode: "run", Result: RunOK, Time: time.Now()}}, nil
	}
	if _, _, err := Refresh(sys, testID, facts); err != nil {
		t.Fatal(err)
	}
	if _, it, err := Read(sys, testID); err != nil || it.Content["DoctorResult"] != DoctorNotRun {
		t.Fatalf("before doctor: %v %v", it.Content, err)
	}
	when := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	if err := SaveDoctor(sys, Doctor{Result: DoctorFailed, Time: when, FailedChecks: []string{"model-access"}}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(filepath.Join(dir, DoctorPath)); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("doctor's record: %v", fi)
	}
	if _, _, err := Refresh(sys, testID, facts); err != nil {
		t.Fatal(err)
	}
	_, it, err := Read(sys, testID)
	if err != nil || it.Content["DoctorResult"] != DoctorFailed || it.Content["DoctorTime"] != "2026-12-01T08:00:00Z" || it.Content["DoctorFailedChecks"] != "model-access" {
		t.Errorf("after doctor: %v %v", it.Content, err)
	}
}

// What the inventory adds to every run: a refresh whose content did not
// change (lock, checks, compare, no write).
func BenchmarkRefreshUnchanged(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "var/lib"), 0o755); err != nil {
		b.Fatal(err)
	}
	sys, err := fsroot.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	facts := func() (Facts, error) { return testFacts(), nil }
	for b.Loop() {
		if _, _, err := Refresh(sys, testID, facts); err != nil {
			b.Fatal(err)
		}
	}
}
