package distributor

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var epoch = time.Unix(1700000000, 0)

// build writes a package of two fake binaries into a new directory.
func build(t *testing.T, bins map[string][]byte) string {
	t.Helper()
	src := t.TempDir()
	o := Options{Version: "v1.2.3-test", Epoch: epoch, Binaries: map[string]string{}, Out: filepath.Join(t.TempDir(), "pkg")}
	for arch, b := range bins {
		p := filepath.Join(src, "ccboot-"+arch)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		o.Binaries[arch] = p
	}
	doc := filepath.Join(src, "LICENSE")
	if err := os.WriteFile(doc, []byte("license text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o.Docs = []string{doc}
	names, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 2*len(bins)+1 || names[len(names)-1] != ManifestName {
		t.Fatalf("Build wrote %v", names)
	}
	return o.Out
}

var fakeBins = map[string][]byte{"amd64": []byte("\x7fELF amd64 binary"), "arm64": []byte("\x7fELF arm64 binary")}

// TestBuild: the package passes the format check, the same inputs give the
// same bytes, and each zip holds the scripts, the binary of its
// architecture and the matching hash line, sorted, with fixed mtime and
// modes.
func TestBuild(t *testing.T) {
	a, b := build(t, fakeBins), build(t, fakeBins)
	m, err := Check(a)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if m.SchemaVersion != "2.0" || m.Version != "v1.2.3-test" || len(m.Files) != 4 {
		t.Errorf("manifest: %+v", m)
	}
	want := map[string]string{
		"amazon/2023/x86_64": "ccboot_v1.2.3-test_al2023_x86_64.zip", "amazon/2023/arm64": "ccboot_v1.2.3-test_al2023_arm64.zip",
		"debian/_any/x86_64": "ccboot_v1.2.3-test_debian_x86_64.zip", "debian/_any/arm64": "ccboot_v1.2.3-test_debian_arm64.zip",
		"ubuntu/_any/x86_64": "ccboot_v1.2.3-test_debian_x86_64.zip", "ubuntu/_any/arm64": "ccboot_v1.2.3-test_debian_arm64.zip",
	}
	got := map[string]string{}
	for p, vs := range m.Packages {
		for v, as := range vs {
			for arch, ref := range as {
				got[p+"/"+v+"/"+arch] = ref.File
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("packages %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("packages %s = %q, want %q", k, got[k], v)
		}
	}
	entries, _ := os.ReadDir(a)
	for _, e := range entries {
		x, y := readFile(t, filepath.Join(a, e.Name())), readFile(t, filepath.Join(b, e.Name()))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds of the same inputs", e.Name())
		}
	}
	for goarch, arch := range Arch {
		zr, err := zip.OpenReader(filepath.Join(a, "ccboot_v1.2.3-test_debian_"+arch+".zip"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
			wantMode := os.FileMode(0o755)
			if f.Name == "LICENSE" || f.Name == HashName {
				wantMode = 0o644
			}
			if f.Mode() != wantMode || !f.Modified.Equal(epoch) {
				t.Errorf("%s: mode %v mtime %v, want %v and %v", f.Name, f.Mode(), f.Modified, wantMode, epoch)
			}
			if f.Name == BinaryName && !bytes.Equal(zipRead(t, f), fakeBins[goarch]) {
				t.Errorf("the %s zip's ccboot is not the %s binary", arch, goarch)
			}
		}
		zr.Close()
		if s := strings.Join(names, " "); s != "LICENSE ccboot ccboot.sha256 install.sh uninstall.sh update.sh" {
			t.Errorf("zip entries %s", s)
		}
	}
}

func zipRead(t *testing.T, f *zip.File) []byte {
	t.Helper()
	r, err := f.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuildRefusesVersion: a version name Distributor would refuse fails
// the build, naming the rule.
func TestBuildRefusesVersion(t *testing.T) {
	_, err := Build(Options{Version: "v1.2.3+meta", Binaries: map[string]string{"amd64": "/nonexistent"}, Out: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "only letters, digits, _ . -") {
		t.Fatalf("Build with + in the version: %v", err)
	}
}

// TestCheckRefuses: each departure from the documented format is named.
func TestCheckRefuses(t *testing.T) {
	cases := []struct {
		name, want string
		edit       func(m map[string]any, dir string)
	}{
		{"schema version", `schemaVersion "1.0"`, func(m map[string]any, _ string) { m["schemaVersion"] = "1.0" }},
		{"unknown key", `unknown field "publsher"`, func(m map[string]any, _ string) { m["publsher"] = "x" }},
		{"version name", `version "v1 2"`, func(m map[string]any, _ string) { m["version"] = "v1 2" }},
		{"platform name", `platform "amazonlinux"`, func(m map[string]any, _ string) {
			p := m["packages"].(map[string]any)
			p["amazonlinux"] = p["amazon"]
		}},
		{"arch name", `architecture "amd64"`, func(m map[string]any, _ string) {
			v := m["packages"].(map[string]any)["debian"].(map[string]any)["_any"].(map[string]any)
			v["amd64"] = v["x86_64"]
		}},
		{"platform version", `platform version "latest"`, func(m map[string]any, _ string) {
			p := m["packages"].(map[string]any)["debian"].(map[string]any)
			p["latest"] = p["_any"]
		}},
		{"unlisted file", "which files does not list", func(m map[string]any, _ string) {
			m["packages"].(map[string]any)["debian"].(map[string]any)["_any"].(map[string]any)["x86_64"] = map[string]any{"file": "other.zip"}
		}},
		{"unused file", "which no platform uses", func(m map[string]any, _ string) {
			f := m["files"].(map[string]any)
			f["extra.zip"] = f["ccboot_v1.2.3-test_debian_x86_64.zip"]
		}},
		{"checksum", "sha256 " + strings.Repeat("0", 64), func(m map[string]any, _ string) {
			f := m["files"].(map[string]any)["ccboot_v1.2.3-test_al2023_arm64.zip"].(map[string]any)
			f["checksums"] = map[string]any{"sha256": strings.Repeat("0", 64)}
		}},
		{"zip without install.sh", "no install.sh", func(m map[string]any, dir string) {
			rezip(t, m, dir, "ccboot_v1.2.3-test_al2023_arm64.zip", func(name string, b []byte) []byte {
				if name == InstallName {
					return nil
				}
				return b
			})
		}},
		{"hash file", "ccboot.sha256 says", func(m map[string]any, dir string) {
			rezip(t, m, dir, "ccboot_v1.2.3-test_al2023_arm64.zip", func(name string, b []byte) []byte {
				if name == BinaryName {
					return append(b, '!')
				}
				return b
			})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := build(t, fakeBins)
			var m map[string]any
			if err := json.Unmarshal(readFile(t, filepath.Join(dir, ManifestName)), &m); err != nil {
				t.Fatal(err)
			}
			c.edit(m, dir)
			b, _ := json.Marshal(m)
			if err := os.WriteFile(filepath.Join(dir, ManifestName), b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Check(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Check: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// rezip rewrites one zip through edit (nil drops the entry) and fixes its
// checksum in the manifest, so only the zip's content is wrong.
func rezip(t *testing.T, m map[string]any, dir, name string, edit func(string, []byte) []byte) {
	t.Helper()
	zr, err := zip.OpenReader(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		b := edit(f.Name, zipRead(t, f))
		if b == nil {
			continue
		}
		w, _ := zw.Create(f.Name)
		_, _ = w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	m["files"].(map[string]any)[name] = map[string]any{"checksums": map[string]any{"sha256": sha256Hex(buf.Bytes())}}
}

// --- the scripts, run for real as root in a private mount namespace ---------

// nsScript runs in `unshare --mount`: tmpfs over the directories the
// scripts write, so the host's are never touched; seeds them; runs the
// script from / (not the package's directory, as a person might); then
// copies what the script left into OUT for the test to read.
const nsScript = `set -eu
for d in /usr/local/bin /usr/local/lib /etc/systemd/system; do
	mount -t tmpfs -o mode=0755 tmpfs "$d"
	# Only into the tmpfs: the namespace shares every other file with the host.
	if [ -n "$SEED" ] && [ -d "$SEED$d" ]; then cp -a "$SEED$d/." "$d/"; fi
done
cd /
rc=0
PATH="$STUBS:$PATH" sh "$SCRIPT" >"$OUT/stdout" 2>"$OUT/stderr" || rc=$?
echo "$rc" >"$OUT/rc"
mkdir -p "$OUT/after/usr/local" "$OUT/after/etc/systemd"
cp -a /usr/local/bin /usr/local/lib "$OUT/after/usr/local/"
cp -a /etc/systemd/system "$OUT/after/etc/systemd/"
`

type nsResult struct {
	rc             string
	stdout, stderr string
	after          string // the tree the script left (usr/local/..., etc/systemd/system)
	systemctl      string // the stub's log
}

// inNamespace runs one package script with seed's files laid over the
// tmpfs directories and a systemctl stub that logs its arguments.
func inNamespace(t *testing.T, script, seed string) nsResult {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the package scripts in a private mount namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	out, stubs := t.TempDir(), t.TempDir()
	stub := "#!/bin/sh\necho \"$*\" >>" + filepath.Join(out, "systemctl.log") + "\n"
	if err := os.WriteFile(filepath.Join(stubs, "systemctl"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", nsScript)
	cmd.Env = append(os.Environ(), "SEED="+seed, "SCRIPT="+script, "OUT="+out, "STUBS="+stubs)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("namespace: %v\n%s", err, b)
	}
	r := nsResult{after: filepath.Join(out, "after")}
	r.rc = strings.TrimSpace(string(readFile(t, filepath.Join(out, "rc"))))
	r.stdout, r.stderr = string(readFile(t, filepath.Join(out, "stdout"))), string(readFile(t, filepath.Join(out, "stderr")))
	if b, err := os.ReadFile(filepath.Join(out, "systemctl.log")); err == nil {
		r.systemctl = string(b)
	}
	return r
}

// fakeCcboot is a package binary for the script tests: `version` names it,
// `install` copies itself into place as the real one does and exits rc.
func fakeCcboot(name string, rc int) []byte {
	return []byte("#!/bin/sh\ncase \"$1\" in\nversion) echo 'ccboot " + name + "' ;;\ninstall) cp \"$0\" /usr/local/bin/ccboot; echo install-ran; exit " + string(rune('0'+rc)) + " ;;\nesac\n")
}

// unpack extracts a package zip (of bin) into a new root-only directory,
// as SSM Agent does, and returns it.
func unpack(t *testing.T, bin []byte) string {
	t.Helper()
	dir := build(t, map[string][]byte{"amd64": bin})
	zr, err := zip.OpenReader(filepath.Join(dir, "ccboot_v1.2.3-test_debian_x86_64.zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	pkg := filepath.Join(t.TempDir(), "ccboot", "v1.2.3-test")
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if err := os.WriteFile(filepath.Join(pkg, f.Name), zipRead(t, f), f.Mode()); err != nil {
			t.Fatal(err)
		}
	}
	return pkg
}

// seedTree lays files (path -> content, mode 0755) into a new directory.
func seedTree(t *testing.T, files map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	for p, b := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func fileIn(t *testing.T, root, p string) ([]byte, os.FileInfo) {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		return nil, nil
	}
	b, _ := os.ReadFile(filepath.Join(root, p))
	return b, fi
}

// TestInstallRefusesBadHash is the security test: a package whose binary
// is not the one its ccboot.sha256 names is refused with one line, exit 1,
// and nothing changes (the installed binary stays, no previous is kept,
// nothing runs).
func TestInstallRefusesBadHash(t *testing.T) {
	old := fakeCcboot("old", 0)
	pkg := unpack(t, fakeCcboot("new", 0))
	bin := filepath.Join(pkg, BinaryName)
	b := readFile(t, bin)
	if err := os.WriteFile(bin, append(b, []byte("# altered\n")...), 0o755); err != nil {
		t.Fatal(err)
	}
	r := inNamespace(t, filepath.Join(pkg, InstallName), seedTree(t, map[string][]byte{"usr/local/bin/ccboot": old}))
	if r.rc != "1" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "SHA-256") || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("install.sh of an altered binary: exit %s, stderr %q, want 1 and one line naming the SHA-256 mismatch", r.rc, r.stderr)
	}
	if strings.Contains(r.stdout, "install-ran") {
		t.Error("install.sh ran the altered binary")
	}
	if got, _ := fileIn(t, r.after, "usr/local/bin/ccboot"); !bytes.Equal(got, old) {
		t.Errorf("/usr/local/bin/ccboot changed to %q", got)
	}
	if _, fi := fileIn(t, r.after, "usr/local/lib/ccboot"); fi != nil {
		t.Error("install.sh created /usr/local/lib/ccboot before refusing")
	}
}

// TestInstallRefusesUnsafePackage: a package directory others can write
// (so the checked binary could be swapped before it runs) is refused.
func TestInstallRefusesUnsafePackage(t *testing.T) {
	pkg := unpack(t, fakeCcboot("new", 0))
	if err := os.Chmod(pkg, 0o777); err != nil {
		t.Fatal(err)
	}
	r := inNamespace(t, filepath.Join(pkg, InstallName), "")
	if r.rc != "1" || !strings.Contains(r.stderr, "is not root's alone") || strings.Contains(r.stdout, "install-ran") {
		t.Errorf("install.sh from a 0777 package dir: exit %s, stderr %q stdout %q", r.rc, r.stderr, r.stdout)
	}
}

// TestInstallKeepsPrevious: the installed binary is kept as
// ccboot.previous (root, 0755) before the package's `ccboot install` runs
// (from another working directory), and install.sh exits with its code;
// a failure names the rollback command. A re-run of the same binary keeps
// the real previous one.
func TestInstallKeepsPrevious(t *testing.T) {
	old := fakeCcboot("old", 0)
	for _, rc := range []int{0, 3} {
		newBin := fakeCcboot("new", rc)
		pkg := unpack(t, newBin)
		r := inNamespace(t, filepath.Join(pkg, InstallName), seedTree(t, map[string][]byte{"usr/local/bin/ccboot": old}))
		if r.rc != string(rune('0'+rc)) || !strings.Contains(r.stdout, "install-ran") {
			t.Errorf("install rc %d: install.sh exit %s, stdout %q stderr %q", rc, r.rc, r.stdout, r.stderr)
		}
		prev, fi := fileIn(t, r.after, "usr/local/lib/ccboot/ccboot.previous")
		if !bytes.Equal(prev, old) || fi == nil || fi.Mode() != 0o755 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("install rc %d: ccboot.previous = %q (%v), want the old binary, root 0755", rc, prev, fi)
		}
		if got, _ := fileIn(t, r.after, "usr/local/bin/ccboot"); !bytes.Equal(got, newBin) {
			t.Errorf("install rc %d: /usr/local/bin/ccboot is %q, want the package's", rc, got)
		}
		rollback := "sudo /usr/local/lib/ccboot/ccboot.previous install"
		if (rc != 0) != strings.Contains(r.stderr, rollback) {
			t.Errorf("install rc %d: stderr %q (the rollback command only on failure)", rc, r.stderr)
		}
	}

	newBin := fakeCcboot("new", 0)
	pkg := unpack(t, newBin)
	r := inNamespace(t, filepath.Join(pkg, UpdateName), seedTree(t, map[string][]byte{
		"usr/local/bin/ccboot": newBin, "usr/local/lib/ccboot/ccboot.previous": old}))
	if prev, _ := fileIn(t, r.after, "usr/local/lib/ccboot/ccboot.previous"); r.rc != "0" || !bytes.Equal(prev, old) {
		t.Errorf("update.sh of the installed binary: exit %s, previous %q, want 0 and the old one kept (stderr %q)", r.rc, prev, r.stderr)
	}
}

// TestUninstall: ccboot's units and binaries go, through systemctl; the
// IMDS filter's unit and an admin's drop-in stay.
func TestUninstall(t *testing.T) {
	pkg := unpack(t, fakeCcboot("new", 0))
	seed := seedTree(t, map[string][]byte{
		"usr/local/bin/ccboot":                                               []byte("bin"),
		"usr/local/lib/ccboot/ccboot.previous":                               []byte("prev"),
		"etc/systemd/system/ccboot.service":                                  []byte("unit"),
		"etc/systemd/system/ccboot-broker.socket":                            []byte("socket"),
		"etc/systemd/system/ccboot-broker.service":                           []byte("service"),
		"etc/systemd/system/ccboot-imds-filter.service":                      []byte("filter"),
		"etc/systemd/system/sysinit.target.wants/ccboot-imds-filter.service": []byte("link"),
		"etc/systemd/system/ccboot.service.d/local.conf":                     []byte("[Service]\n"),
	})
	r := inNamespace(t, filepath.Join(pkg, RemoveName), seed)
	if r.rc != "0" {
		t.Fatalf("uninstall.sh: exit %s: %s", r.rc, r.stderr)
	}
	for _, gone := range []string{"usr/local/bin/ccboot", "usr/local/lib/ccboot", "etc/systemd/system/ccboot.service",
		"etc/systemd/system/ccboot-broker.socket", "etc/systemd/system/ccboot-broker.service"} {
		if _, fi := fileIn(t, r.after, gone); fi != nil {
			t.Errorf("uninstall.sh left /%s", gone)
		}
	}
	for _, kept := range []string{"etc/systemd/system/ccboot-imds-filter.service",
		"etc/systemd/system/sysinit.target.wants/ccboot-imds-filter.service", "etc/systemd/system/ccboot.service.d/local.conf"} {
		if _, fi := fileIn(t, r.after, kept); fi == nil {
			t.Errorf("uninstall.sh removed /%s", kept)
		}
	}
	want := "stop ccboot.service ccboot-broker.socket ccboot-broker.service\ndisable ccboot.service ccboot-broker.socket ccboot-broker.service\ndaemon-reload\n"
	if r.systemctl != want {
		t.Errorf("systemctl calls:\n%s\nwant\n%s", r.systemctl, want)
	}
}
