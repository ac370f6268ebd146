package packaging_test

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ccboot/ccboot/packaging/distributor"
)

const (
	distVersion = "v0.3.1-test"
	distCommit  = "0123456789ab"
	distEpoch   = "1700000000"
)

// snapshotRepo copies the work tree (without .git and build output) to a
// new directory: the two builds must see the same source even while
// someone edits the tree, and building in two different directories shows
// that no path leaks into the artifacts.
func snapshotRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("bash", "-c", `tar -C .. --exclude=./.git --exclude=./dist --exclude=./bin --exclude=./.cache -cf - . | tar -C "$1" -xf -`, "snapshot", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("copy the work tree: %v\n%s", err, out)
	}
	return dir
}

// runDist runs dist.sh of the tree in src into dir with a fixed version,
// commit and epoch.
func runDist(t *testing.T, src, dir, nfpm string, extraEnv ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "packaging/dist.sh")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "VERSION="+distVersion, "COMMIT="+distCommit, "SOURCE_DATE_EPOCH="+distEpoch,
		"DIST_DIR="+dir, "NFPM="+nfpm)
	cmd.Env = append(cmd.Env, extraEnv...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dist.sh: %v\n%s", err, out)
	}
	t.Logf("dist.sh into %s took %v", filepath.Base(dir), time.Since(start).Round(time.Second))
}

// buildNfpm installs the nfpm version dist.sh pins, once for both runs.
func buildNfpm(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^NFPM_VERSION=(v[0-9]+\.[0-9]+\.[0-9]+)$`).FindSubmatch(readFile(t, "dist.sh"))
	if m == nil {
		t.Fatal("dist.sh pins no NFPM_VERSION=vX.Y.Z")
	}
	bin := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/goreleaser/nfpm/v2/cmd/nfpm@"+string(m[1]))
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install nfpm@%s: %v\n%s", m[1], err, out)
	}
	return filepath.Join(bin, "nfpm")
}

// TestDist builds the release twice, the second time with an empty Go build
// cache, and wants the same bytes; then checks what is in the artifacts and
// runs the binaries (arm64 under qemu-user).
func TestDist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds linux/arm64 and linux/amd64 twice plus .deb/.rpm (about a minute with a warm Go cache); run without -short")
	}
	for _, tool := range []string{"go", "tar", "gzip", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("dist.sh needs %s: %v", tool, err)
		}
	}
	nfpm := buildNfpm(t)
	srcA := snapshotRepo(t)
	srcB := filepath.Join(t.TempDir(), "elsewhere")
	if out, err := exec.Command("cp", "-a", srcA, srcB).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	runDist(t, srcA, a, nfpm)
	var cold []string
	if os.Getenv("CCBOOT_DIST_COLD_CACHE") != "" {
		// Proves the bytes come from the source, not from a cache hit;
		// opt-in because it recompiles everything (about 4 minutes here).
		cold = append(cold, "GOCACHE="+t.TempDir())
	}
	runDist(t, srcB, b, nfpm, cold...)

	sumsA, sumsB := readFile(t, filepath.Join(a, "SHA256SUMS")), readFile(t, filepath.Join(b, "SHA256SUMS"))
	if !bytes.Equal(sumsA, sumsB) {
		t.Fatalf("not reproducible:\n%s", diffSums(sumsA, sumsB))
	}
	t.Logf("reproducible: both builds have SHA256SUMS\n%s", sumsA)

	want := []string{
		"ccboot-0.3.1-test-1.aarch64.rpm", "ccboot-0.3.1-test-1.x86_64.rpm",
		"ccboot_0.3.1-test-1_amd64.deb", "ccboot_0.3.1-test-1_arm64.deb",
		"ccboot_v0.3.1-test_linux_amd64", "ccboot_v0.3.1-test_linux_amd64.tar.gz",
		"ccboot_v0.3.1-test_linux_arm64", "ccboot_v0.3.1-test_linux_arm64.tar.gz",
		"distributor/v0.3.1-test/ccboot_v0.3.1-test_al2023_arm64.zip", "distributor/v0.3.1-test/ccboot_v0.3.1-test_al2023_x86_64.zip",
		"distributor/v0.3.1-test/ccboot_v0.3.1-test_debian_arm64.zip", "distributor/v0.3.1-test/ccboot_v0.3.1-test_debian_x86_64.zip",
		"distributor/v0.3.1-test/manifest.json",
	}
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(sumsA))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not `HASH  NAME` (sha256sum -c format)", sc.Text())
		}
		names = append(names, name)
		data := readFile(t, filepath.Join(a, name))
		if got := sha256Hex(data); got != sum {
			t.Errorf("SHA256SUMS says %s for %s, file has %s", sum, name, got)
		}
		t.Logf("size %-40s %9d bytes", name, len(data))
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("SHA256SUMS lists\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}

	for arch, machine := range map[string]elf.Machine{"arm64": elf.EM_AARCH64, "amd64": elf.EM_X86_64} {
		bin := filepath.Join(a, "ccboot_"+distVersion+"_linux_"+arch)
		checkStaticStripped(t, bin, machine)
		checkTarball(t, bin+".tar.gz", "ccboot_"+distVersion+"_linux_"+arch, readFile(t, bin))
	}
	checkPackages(t, a)
	checkDistributor(t, filepath.Join(a, "distributor", distVersion), a)

	t.Run("amd64 native", func(t *testing.T) {
		if runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
			t.Skip("not a linux/amd64 host")
		}
		checkBinaryRuns(t, nil, filepath.Join(a, "ccboot_"+distVersion+"_linux_amd64"), "linux/amd64")
	})
	t.Run("arm64 under qemu", func(t *testing.T) {
		qemu, err := exec.LookPath("qemu-aarch64-static")
		if err != nil {
			if qemu, err = exec.LookPath("qemu-aarch64"); err != nil {
				t.Skip("no qemu-aarch64-static (apt-get install qemu-user-static) to run the arm64 binary")
			}
		}
		checkBinaryRuns(t, []string{qemu}, filepath.Join(a, "ccboot_"+distVersion+"_linux_arm64"), "linux/arm64")
	})
}

// checkDistributor: the Distributor package passes the format check
// (manifest shape, names, every zip's sha256, scripts, ccboot.sha256), and
// each zip carries the released binary of its architecture with the
// fixed mtime.
func checkDistributor(t *testing.T, dir, dist string) {
	t.Helper()
	m, err := distributor.Check(dir)
	if err != nil {
		t.Fatalf("the Distributor package in %s: %v", dir, err)
	}
	if m.Version != distVersion {
		t.Errorf("manifest version %q, want %q", m.Version, distVersion)
	}
	for _, platform := range []string{"amazon", "debian", "ubuntu"} {
		for _, arch := range []string{"x86_64", "arm64"} {
			version := "_any"
			if platform == "amazon" {
				version = "2023"
			}
			if m.Packages[platform][version][arch].File == "" {
				t.Errorf("manifest has no %s %s %s package: %v", platform, version, arch, m.Packages)
			}
		}
	}
	for goarch, arch := range map[string]string{"amd64": "x86_64", "arm64": "arm64"} {
		bin := readFile(t, filepath.Join(dist, "ccboot_"+distVersion+"_linux_"+goarch))
		for _, target := range []string{"al2023", "debian"} {
			name := "ccboot_" + distVersion + "_" + target + "_" + arch + ".zip"
			zr, err := zip.OpenReader(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range zr.File {
				names = append(names, f.Name)
				if f.Modified.Unix() != 1700000000 {
					t.Errorf("%s: %s mtime %v, want SOURCE_DATE_EPOCH %s", name, f.Name, f.Modified, distEpoch)
				}
				if f.Name == "ccboot" {
					r, _ := f.Open()
					got, _ := io.ReadAll(r)
					r.Close()
					if !bytes.Equal(got, bin) || f.Mode().Perm() != 0o755 {
						t.Errorf("%s: ccboot differs from the released %s binary, or mode %v != 0755", name, goarch, f.Mode())
					}
				}
			}
			zr.Close()
			if want := "LICENSE THIRD_PARTY_LICENSES ccboot ccboot.sha256 install.sh uninstall.sh update.sh"; strings.Join(names, " ") != want {
				t.Errorf("%s holds %v, want %s (sorted)", name, names, want)
			}
		}
	}
}

func diffSums(a, b []byte) string {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	var out []string
	for i := 0; i < len(la) || i < len(lb); i++ {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
		}
	}
	return strings.Join(out, "\n")
}

func checkStaticStripped(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (has an interpreter); build with CGO_ENABLED=0", path)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s has a symbol table; build with -ldflags -s", path)
	}
	// The release leaves out net/http's bundled HTTP/2 (see dist.sh).
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: no Go build info: %v", path, err)
	}
	tags := ""
	for _, s := range info.Settings {
		if s.Key == "-tags" {
			tags = s.Value
		}
	}
	if !slices.Contains(strings.Split(tags, ","), "nethttpomithttp2") {
		t.Errorf("%s built with tags %q, want nethttpomithttp2", path, tags)
	}
}

// checkTarball wants sorted entries under one directory, owned by 0:0, all
// with the fixed mtime, the binary intact, and a gzip header without a name
// or time (gzip -n).
func checkTarball(t *testing.T, path, top string, bin []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("%s: gzip header has name %q time %v; use gzip -n", path, zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	found := false
	licenses := map[string]bool{}
	units := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 1700000000 {
			t.Errorf("%s: %s owner %d:%d mtime %d, want 0:0 and %s", path, h.Name, h.Uid, h.Gid, h.ModTime.Unix(), distEpoch)
		}
		if !strings.HasPrefix(h.Name, top+"/") {
			t.Errorf("%s: %s is outside %s/", path, h.Name, top)
		}
		if h.Name == top+"/ccboot" {
			found = true
			got, _ := io.ReadAll(tr)
			if !bytes.Equal(got, bin) || h.Mode&0o777 != 0o755 {
				t.Errorf("%s: ccboot differs from the released binary or mode %o != 0755", path, h.Mode)
			}
		}
		for _, unit := range []string{"ccboot.service", "ccboot-broker.socket", "ccboot-broker.service"} {
			if h.Name == top+"/"+unit {
				units[unit] = true
				got, _ := io.ReadAll(tr)
				if !bytes.Equal(got, readFile(t, "systemd/"+unit)) {
					t.Errorf("%s: %s differs from systemd/%s", path, unit, unit)
				}
			}
		}
		for _, doc := range []string{"LICENSE", "THIRD_PARTY_LICENSES"} {
			if h.Name == top+"/"+doc {
				licenses[doc] = true
				got, _ := io.ReadAll(tr)
				if !bytes.Equal(got, readFile(t, filepath.Join("..", doc))) {
					t.Errorf("%s: %s differs from the repository's", path, doc)
				}
			}
		}
	}
	if !found {
		t.Errorf("%s has no %s/ccboot: %v", path, top, names)
	}
	if len(units) != 3 {
		t.Errorf("%s lacks a unit (has %v): %v", path, units, names)
	}
	if !licenses["LICENSE"] || !licenses["THIRD_PARTY_LICENSES"] {
		t.Errorf("%s lacks LICENSE or THIRD_PARTY_LICENSES: %v", path, names)
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("%s: entries not sorted: %v", path, names)
	}
}

// checkPackages reads the .deb and .rpm with the distros' own tools, when
// they are here.
func checkPackages(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err == nil {
		deb := filepath.Join(dir, "ccboot_0.3.1-test-1_arm64.deb")
		out, err := exec.Command("dpkg-deb", "-f", deb, "Version", "Architecture").CombinedOutput()
		if err != nil || string(out) != "Version: 0.3.1~test-1\nArchitecture: arm64\n" {
			t.Errorf("dpkg-deb -f %s: %v\n%s", deb, err, out)
		}
		// dpkg has no License field of its own; nfpm.yaml adds one.
		out, err = exec.Command("dpkg-deb", "-f", deb, "License").CombinedOutput()
		if err != nil || string(out) != "Apache-2.0\n" {
			t.Errorf("dpkg-deb -f %s License: %v\n%s", deb, err, out)
		}
		out, err = exec.Command("dpkg-deb", "-c", deb).CombinedOutput()
		for _, p := range []string{" ./usr/local/bin/ccboot\n", " ./usr/lib/systemd/system/ccboot.service\n",
			" ./usr/lib/systemd/system/ccboot-broker.socket\n", " ./usr/lib/systemd/system/ccboot-broker.service\n",
			" ./usr/share/doc/ccboot/LICENSE\n", " ./usr/share/doc/ccboot/THIRD_PARTY_LICENSES\n"} {
			if err != nil || !strings.Contains(string(out), p) || !strings.Contains(string(out), "-rwxr-xr-x root/root") {
				t.Errorf("%s lacks%s: %v\n%s", deb, strings.TrimSpace(p), err, out)
			}
		}
	} else {
		t.Log("no dpkg-deb: .deb contents not checked")
	}
	if _, err := exec.LookPath("rpm"); err == nil {
		rpm := filepath.Join(dir, "ccboot-0.3.1-test-1.aarch64.rpm")
		out, err := exec.Command("rpm", "-qp", "--qf", "%{VERSION}-%{RELEASE} %{ARCH}\n", "-l", rpm).CombinedOutput()
		got := string(out)
		if err != nil || !strings.HasPrefix(got, "0.3.1~test-1 aarch64\n") || !strings.Contains(got, "\n/usr/local/bin/ccboot\n") ||
			!strings.Contains(got, "\n/usr/lib/systemd/system/ccboot.service\n") || !strings.Contains(got, "\n/usr/lib/systemd/system/ccboot-broker.socket\n") ||
			!strings.Contains(got, "\n/usr/lib/systemd/system/ccboot-broker.service\n") {
			t.Errorf("rpm -qpl %s: %v\n%s", rpm, err, got)
		}
		out, err = exec.Command("rpm", "-qp", "--qf", "%{LICENSE}\n", "--licensefiles", rpm).CombinedOutput()
		if want := "Apache-2.0\n/usr/share/doc/ccboot/LICENSE\n/usr/share/doc/ccboot/THIRD_PARTY_LICENSES\n"; err != nil || string(out) != want {
			t.Errorf("rpm -qp --licensefiles %s: %v\n%s\nwant\n%s", rpm, err, out, want)
		}
	} else {
		t.Log("no rpm: .rpm contents not checked")
	}
}

// checkBinaryRuns runs the released binary (through the emulator in
// prefix): version shows the stamp; plan, run and plan again of the
// profile-env step converge a temp root without IMDS.
func checkBinaryRuns(t *testing.T, prefix []string, bin, platform string) {
	t.Helper()
	root := t.TempDir()
	// A loopback port nothing listens on: IMDS fails fast, never 169.254.169.254.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	imds := "http://" + l.Addr().String()
	l.Close()
	ccboot := func(args ...string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		argv := append(append(append([]string(nil), prefix...), bin), args...)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		switch {
		case err == nil:
			return 0, string(out)
		case errors.As(err, &exitErr):
			return exitErr.ExitCode(), string(out)
		}
		t.Fatalf("%v: %v\n%s", argv, err, out)
		return 0, ""
	}
	code, out := ccboot("version")
	if want := "ccboot " + distVersion + " (commit " + distCommit + ","; code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, platform) {
		t.Fatalf("version: exit %d %q, want %q... %s", code, out, want, platform)
	}
	flags := []string{"--root", root, "--only", "profile-env", "--set", "aws.region=eu-west-1",
		"--imds-endpoint", imds, "--set", "ccboot.imds_timeout=1s"}
	profile := filepath.Join(root, "etc/profile.d/claude-bedrock.sh")
	if code, out := ccboot(append([]string{"plan"}, flags...)...); code != 2 || !strings.Contains(out, profile) {
		t.Fatalf("plan on an empty root: exit %d, want 2 (changes pending) naming %s:\n%s", code, profile, out)
	}
	if _, err := os.Stat(profile); err == nil {
		t.Fatal("plan wrote the file")
	}
	if code, out := ccboot(append([]string{"run"}, flags...)...); code != 0 {
		t.Fatalf("run: exit %d:\n%s", code, out)
	}
	if got := string(readFile(t, profile)); !strings.Contains(got, "AWS_REGION='eu-west-1'") {
		t.Errorf("run wrote %s:\n%s", profile, got)
	}
	if code, out := ccboot(append([]string{"plan"}, flags...)...); code != 0 {
		t.Errorf("plan after run: exit %d, want 0 (in sync):\n%s", code, out)
	}
}

// TestThirdPartyLicenses: THIRD_PARTY_LICENSES lists what the release binary
// links (dist.sh refuses to build otherwise), and the check notices a stale
// list, so a dependency change cannot ship with its license unlisted.
func TestThirdPartyLicenses(t *testing.T) {
	if out, err := exec.Command("bash", "licenses.sh", "--check").CombinedOutput(); err != nil {
		t.Fatalf("licenses.sh --check: %v\n%s", err, out)
	}
	listed := string(readFile(t, "../THIRD_PARTY_LICENSES"))
	for _, want := range []string{
		"github.com/aws/aws-sdk-go-v2/feature/ec2/imds", "gopkg.in/ini.v1", "github.com/coreos/go-systemd/v22",
		"go.uber.org/zap", "golang.org/x/sys", "Go standard library",
	} {
		if !strings.Contains(listed, "\n"+want+" ") {
			t.Errorf("THIRD_PARTY_LICENSES does not list %s", want)
		}
	}

	src := snapshotRepo(t)
	stale := filepath.Join(src, "THIRD_PARTY_LICENSES")
	edited := strings.Replace(listed, "go.uber.org/zap", "go.uber.org/zapp", 1)
	if err := os.WriteFile(stale, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "packaging/licenses.sh", "--check")
	cmd.Dir = src
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "out of date") || !strings.Contains(string(out), "make licenses") {
		t.Fatalf("licenses.sh --check on a stale list: %v, want a failure naming make licenses:\n%s", err, out)
	}
}
