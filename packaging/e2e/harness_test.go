//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The harness side of the e2e suite: build the release binaries, write
// NoCloud seeds around the shipped UserData, boot guests through the
// committed boot scripts and read back what their probes wrote.

const (
	// distPort is where the guest serves /srv/dist on its own loopback, so
	// the shipped UserData downloads the binary over http://127.0.0.1
	// (the only plain-http form it accepts) in nspawn and QEMU alike.
	distPort = 8099
	// nspawnIMDS is the mock as an nspawn guest sees it (shared netns).
	nspawnIMDS = "http://127.0.0.1:1338"
)

// suite is built once per `go test` run by TestE2E.
type suite struct {
	repo, e2eDir string
	work         string // per-run results (kept when a test fails)
	dist         string // read-only /srv/dist: ccboot, ccboot-crashhook
	arm64        string // the arm64 binary (host side only)
	sum          string // SHA-256 of dist/ccboot
	timings      *timings
}

type timings struct {
	mu    sync.Mutex
	lines []string
}

func (tm *timings) add(name string, d time.Duration) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	tm.lines = append(tm.lines, fmt.Sprintf("timing: %-34s %7.1fs", name, d.Seconds()))
}

func newSuite(t *testing.T) *suite {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e needs root (netns, nspawn, qemu); run `make e2e` as root")
	}
	_, file, _, _ := runtime.Caller(0)
	e2eDir := filepath.Dir(file)
	s := &suite{e2eDir: e2eDir, repo: filepath.Clean(filepath.Join(e2eDir, "..", "..")), timings: &timings{}}
	work := os.Getenv("CCBOOT_E2E_WORK")
	if work == "" {
		var err error
		work, err = os.MkdirTemp("/var/tmp", "ccboot-e2e-test.")
		if err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	s.work = work
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("CCBOOT_E2E_KEEP") == "1" {
			t.Logf("results kept in %s", work)
			return
		}
		_ = os.RemoveAll(work)
	})
	s.dist = filepath.Join(work, "dist")
	start := time.Now()
	s.build(t, filepath.Join(s.dist, "ccboot"), "amd64")
	s.build(t, filepath.Join(s.dist, "ccboot-crashhook"), "amd64", "crashhook")
	s.arm64 = filepath.Join(work, "arm64", "ccboot")
	s.build(t, s.arm64, "arm64")
	s.sum = sha256File(t, filepath.Join(s.dist, "ccboot"))
	s.timings.add("build binaries", time.Since(start))
	start = time.Now()
	s.releaseChannel(t)
	s.timings.add("claude release channel", time.Since(start))
	return s
}

// build compiles cmd/ccboot the way `make dist` does (static, trimmed).
func (s *suite) build(t *testing.T, out, goarch string, tags ...string) {
	t.Helper()
	if bin := os.Getenv("CCBOOT_E2E_BIN_" + strings.ToUpper(goarch)); bin != "" && len(tags) == 0 {
		copyFile(t, bin, out, 0o755)
		return
	}
	tags = append([]string{"nethttpomithttp2"}, tags...) // as make dist
	args := []string{"build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e", "-o", out, "-tags", strings.Join(tags, ",")}
	args = append(args, "./cmd/ccboot")
	cmd := exec.Command("go", args...)
	cmd.Dir = s.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s (%s): %v\n%s", out, goarch, err, b)
	}
}

// seedOpts is what a guest's NoCloud seed says.
type seedOpts struct {
	instanceID string
	sum        string // SHA-256 given to UserData (default: the real one)
	model      string
	tierMode   string // UserData's CCBOOT_TIER_MODE (the stack's TierMode); empty: unset
	// dropIn is the body of /etc/systemd/system/ccboot.service.d/e2e.conf:
	// what only a test needs (IMDS endpoint, offline npm, the flags of a
	// scenario). Empty: none.
	dropIn string
	// userData: false writes a cloud-config with no UserData script (the
	// scenario runs ccboot by hand).
	noUserData bool
	// cloudConfig is more cloud-config (YAML) for the guest, merged into
	// the harness's own: its write_files entries are added, other keys set.
	cloudConfig string
}

// guestFile is one file cloud-init writes into the guest (mode 0644).
type guestFile struct{ path, body string }

// writeFiles renders files as a cloud-config write_files list.
func writeFiles(files ...guestFile) string {
	var b strings.Builder
	b.WriteString("write_files:\n")
	for _, f := range files {
		fmt.Fprintf(&b, "  - path: %s\n    permissions: '0644'\n    content: |\n", f.path)
		for _, l := range strings.Split(strings.TrimRight(f.body, "\n"), "\n") {
			b.WriteString("      " + l + "\n")
		}
	}
	return b.String()
}

// dropIn renders the ccboot.service drop-in: environment lines and, when
// flags is not empty, ExecStart with those flags. The harness needs the
// flags because UserData's ccboot.conf has no key for them (e.g. swap off
// where swapon is impossible).
func dropIn(env []string, flags string) string {
	var b strings.Builder
	b.WriteString("[Service]\n")
	for _, e := range env {
		fmt.Fprintf(&b, "Environment=%s\n", e)
	}
	if flags != "" {
		fmt.Fprintf(&b, "ExecStart=\nExecStart=/usr/local/bin/ccboot run %s\n", flags)
	}
	return b.String()
}

// nspawnEnv is the guest environment an nspawn guest needs for ccboot: the
// mock in the shared netns, and npm from the offline cache (ccboot runs no
// npm; the variables stay for probes that do).
var nspawnEnv = []string{
	"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + nspawnIMDS,
	"npm_config_offline=true",
	"npm_config_cache=/srv/npm-cache",
}

// writeSeed writes DIR/user-data (MIME multipart: a cloud-config part with
// the test's additions, then the shipped UserData script with its settings
// block filled like the CloudFormation template fills it) and DIR/meta-data.
func (s *suite) writeSeed(t *testing.T, dir string, o seedOpts) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	cfg.WriteString("#cloud-config\n")
	// Serve /srv/dist on the guest's loopback for UserData's download.
	// bootcmd runs inside cloud-init.service, which is ordered before
	// basic.target: the transient unit must not wait for it (--no-block,
	// no default dependencies), or boot deadlocks.
	fmt.Fprintf(&cfg, "bootcmd:\n  - [systemd-run, --no-block, --unit=e2e-dist-http, --property=DefaultDependencies=no, --quiet, python3, -m, http.server, --bind, 127.0.0.1, --directory, /srv/dist, %q]\n", strconv.Itoa(distPort))
	if o.dropIn != "" {
		cfg.WriteString(writeFiles(guestFile{"/etc/systemd/system/ccboot.service.d/e2e.conf", o.dropIn}))
	}

	var ud bytes.Buffer
	mw := multipart.NewWriter(&ud)
	fmt.Fprintf(&ud, "Content-Type: multipart/mixed; boundary=%q\nMIME-Version: 1.0\n\n", mw.Boundary())
	part := func(ctype, name, body string) {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", ctype+`; charset="us-ascii"`)
		h.Set("MIME-Version", "1.0")
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(body))
	}
	cloudCfg := cfg.String()
	if o.cloudConfig != "" {
		cloudCfg = mergeCloudConfig(t, cloudCfg, o.cloudConfig)
	}
	part("text/cloud-config", "e2e.cfg", cloudCfg)
	if !o.noUserData {
		part("text/x-shellscript", "userdata.sh", s.userData(t, o))
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "user-data"), ud.String())
	id := o.instanceID
	if id == "" {
		id = "i-0e2e0000000000001"
	}
	writeFile(t, filepath.Join(dir, "meta-data"), fmt.Sprintf("instance-id: %s\nlocal-hostname: ccboot-e2e\n", id))
}

// userData is packaging/userdata/userdata.sh with the settings block set.
func (s *suite) userData(t *testing.T, o seedOpts) string {
	t.Helper()
	// CCBOOT_E2E_USERDATA: another script in its place, for breakage
	// experiments (e.g. a copy without the checksum check).
	src := filepath.Join(s.repo, "packaging", "userdata", "userdata.sh")
	if p := os.Getenv("CCBOOT_E2E_USERDATA"); p != "" {
		src = p
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	const marker = "# @cfn-settings (the CloudFormation template sets the variables here)\n"
	if !bytes.Contains(b, []byte(marker)) {
		t.Fatalf("packaging/userdata/userdata.sh has no settings marker %q", marker)
	}
	sum := o.sum
	if sum == "" {
		sum = s.sum
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/ccboot", distPort)
	settings := marker +
		fmt.Sprintf("CCBOOT_URL_AMD64='%s'\nCCBOOT_SHA256_AMD64='%s'\n", url, sum) +
		"CCBOOT_URL_ARM64=''\nCCBOOT_SHA256_ARM64=''\n" +
		fmt.Sprintf("CCBOOT_MODEL='%s'\n", o.model)
	if o.tierMode != "" {
		settings += fmt.Sprintf("CCBOOT_TIER_MODE='%s'\n", o.tierMode)
	}
	return strings.Replace(string(b), marker, settings, 1)
}

// bootOpts describes one guest run.
type bootOpts struct {
	qemu       bool
	variant    string
	image      string // QEMU: root disk instead of the cache's (boot-qemu.sh --image)
	seed       string
	probe      []string // scenario files, concatenated after lib-probe.sh
	probeEnv   []string // NAME=value lines exported at the top of the probe
	mockConfig string
	docker     bool
	state      bool
	timeout    time.Duration
	netns      string   // join this netns (netns.sh up) instead of a private one
	nspawnArgs []string // more systemd-nspawn arguments (e.g. a bind mount)
	qemuFwd    []string // QEMU: guest IP:PORT forwarded to the netns's 127.0.0.1:PORT (boot-qemu.sh --fwd)
}

// boot runs boot-nspawn.sh or boot-qemu.sh and returns the results dir and
// the script's exit code (0 ok, 3 a probe failed, 124 timeout, 1 other).
func (s *suite) boot(t *testing.T, name string, o bootOpts) (string, int) {
	t.Helper()
	dir := filepath.Join(s.work, name)
	out := filepath.Join(dir, "out")
	var probe strings.Builder
	probe.WriteString("#!/bin/bash\n")
	for _, e := range o.probeEnv {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&probe, "export %s=%s\n", k, shellQuote(v))
	}
	for _, f := range append([]string{"lib-probe.sh"}, o.probe...) {
		b, err := os.ReadFile(filepath.Join(s.e2eDir, "scenarios", f))
		if err != nil {
			t.Fatal(err)
		}
		probe.Write(b)
		probe.WriteString("\n")
	}
	probeFile := filepath.Join(dir, "probe.sh")
	writeFile(t, probeFile, probe.String())
	script := "boot-nspawn.sh"
	if o.qemu {
		script = "boot-qemu.sh"
	}
	timeout := o.timeout
	if timeout == 0 {
		timeout = 6 * time.Minute
	}
	args := []string{"--seed", o.seed, "--out", out, "--probe", probeFile, "--dist", s.dist,
		"--timeout", strconv.Itoa(int(timeout.Seconds()))}
	if o.variant != "" {
		args = append(args, "--variant", o.variant)
	}
	if o.image != "" {
		args = append(args, "--image", o.image)
	}
	if o.mockConfig != "" {
		args = append(args, "--mock-config", o.mockConfig)
	}
	if o.docker {
		args = append(args, "--docker")
	}
	if o.state {
		args = append(args, "--state", filepath.Join(dir, "state"))
	}
	if o.netns != "" {
		args = append(args, "--netns", o.netns)
	}
	for _, f := range o.qemuFwd {
		args = append(args, "--fwd", f)
	}
	if len(o.nspawnArgs) > 0 {
		args = append(append(args, "--"), o.nspawnArgs...)
	}
	cmd := exec.Command(filepath.Join(s.e2eDir, script), args...)
	logf, err := os.Create(filepath.Join(dir, "boot.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	err = cmd.Run()
	s.timings.add("boot "+name, time.Since(start))
	rc := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		rc = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", script, err)
	}
	t.Logf("%s %s: exit %d in %.1fs; log %s", script, name, rc, time.Since(start).Seconds(), logf.Name())
	if rc == 124 || rc == 1 {
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("%s %s: exit %d (timeout or harness failure); tail of its log:\n%s", script, name, rc, tail(string(b), 30))
	}
	return out, rc
}

// mockConfig writes an AEMM config for these values (netns.sh config) and
// lets edit change the decoded JSON.
func (s *suite) mockConfig(t *testing.T, name, region, account, profile, partition string, edit func(map[string]any)) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(s.e2eDir, "netns.sh"), "config", region, account, "i-0e2e0000000000001", profile, partition)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("netns.sh config: %v", err)
	}
	if edit != nil {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		if b, err = json.MarshalIndent(m, "", "  "); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(s.work, name+".mock.json")
	writeFile(t, p, string(b))
	return p
}

// guest reads a boot's result files.
type guest struct {
	t   *testing.T
	dir string // OUT/boot-N
}

func bootDir(t *testing.T, out string, n int) guest {
	return guest{t: t, dir: filepath.Join(out, fmt.Sprintf("boot-%d", n))}
}

// file returns a result file's content ("" and an error logged if missing).
func (g guest) file(name string) string {
	g.t.Helper()
	b, err := os.ReadFile(filepath.Join(g.dir, name))
	if err != nil {
		g.t.Errorf("guest result %s: %v", name, err)
		return ""
	}
	return string(b)
}

// rc is the exit code a capture in the probe recorded.
func (g guest) rc(name string) int {
	g.t.Helper()
	s := strings.TrimSpace(g.file(name + ".rc"))
	n, err := strconv.Atoi(s)
	if err != nil {
		g.t.Errorf("%s.rc: %q is not an exit code", name, s)
		return -1
	}
	return n
}

func (g guest) ms(name string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(g.file(name + ".ms")))
	return n
}

// out is a capture's stdout and stderr, for messages.
func (g guest) out(name string) string {
	return g.file(name+".out") + g.file(name+".err")
}

func (g guest) cloudInit() (status string, rc int) {
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(g.file("cloud-init-status.json")), &st); err != nil {
		g.t.Errorf("cloud-init-status.json: %v", err)
	}
	rc, _ = strconv.Atoi(strings.TrimSpace(g.file("cloud-init-status.rc")))
	return st.Status, rc
}

// report is the part of ccboot's state/status JSON the tests read.
type report struct {
	Mode     string    `json:"mode"`
	Complete bool      `json:"complete"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Steps    []struct {
		Name    string   `json:"name"`
		Result  string   `json:"result"`
		Changes []string `json:"changes"`
		Notes   []string `json:"notes"`
		Error   string   `json:"error"`
	} `json:"steps"`
}

func (g guest) report(name string) report {
	g.t.Helper()
	var r report
	if err := json.Unmarshal([]byte(g.file(name)), &r); err != nil {
		g.t.Errorf("%s: not a ccboot report: %v", name, err)
	}
	return r
}

func (r report) results() map[string]string {
	m := map[string]string{}
	for _, s := range r.Steps {
		m[s.Name] = s.Result
	}
	return m
}

func (r report) changes() int {
	n := 0
	for _, s := range r.Steps {
		n += len(s.Changes)
	}
	return n
}

// kv parses `systemctl show` output.
func kv(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func writeFile(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// lines returns the lines of s that contain sub.
func lines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// mergeCloudConfig adds extra's keys to base (both cloud-config YAML):
// write_files entries are appended, other keys replaced.
func mergeCloudConfig(t *testing.T, base, extra string) string {
	t.Helper()
	var b, e map[string]any
	if err := yaml.Unmarshal([]byte(base), &b); err != nil {
		t.Fatalf("harness cloud-config: %v", err)
	}
	if err := yaml.Unmarshal([]byte(extra), &e); err != nil {
		t.Fatalf("scenario cloud-config: %v\n%s", err, extra)
	}
	if b == nil {
		b = map[string]any{}
	}
	for k, v := range e {
		if k == "write_files" {
			old, _ := b[k].([]any)
			add, _ := v.([]any)
			b[k] = append(old, add...)
			continue
		}
		b[k] = v
	}
	out, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return "#cloud-config\n" + string(out)
}
