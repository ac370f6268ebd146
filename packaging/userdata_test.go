package packaging_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/ini.v1"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

type bashResult struct {
	code int
	out  string
}

// runBash runs script with bash, a clean environment plus env, and extra
// directories in front of PATH.
func runBash(t *testing.T, script string, env map[string]string, pathFirst []string) bashResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script, "userdata")
	cmd.Env = []string{"PATH=" + strings.Join(append(pathFirst, os.Getenv("PATH")), ":"), "HOME=" + t.TempDir(), "LC_ALL=C"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return bashResult{0, string(out)}
	case errors.As(err, &exitErr):
		return bashResult{exitErr.ExitCode(), string(out)}
	}
	t.Fatalf("bash: %v\n%s", err, out)
	return bashResult{}
}

// fakeCcboot records its arguments and exits with $FAKE_CCBOOT_EXIT. If it
// ever runs, the marker file says so.
const fakeCcboot = `#!/bin/sh
echo "ran: $*" >>"$CCBOOT_TEST_MARKER"
exit "${FAKE_CCBOOT_EXIT:-0}"
`

// releaseServer is a loopback stand-in for the bucket the binary comes from
// and for the WaitConditionHandle URL.
type releaseServer struct {
	*httptest.Server
	mu       sync.Mutex
	hits     map[string]int
	failures int // /flaky answers 500 this many times first
	signals  []waitSignal
}

type waitSignal struct {
	ContentType              string
	Status, Reason, UniqueID string
}

func newReleaseServer(t *testing.T, failures int) *releaseServer {
	s := &releaseServer{hits: map[string]int{}, failures: failures}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.hits[r.URL.Path]++
		switch {
		case r.URL.Path == "/wait" && r.Method == http.MethodPut:
			var body struct{ Status, Reason, UniqueId string }
			b, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(b, &body); err != nil {
				t.Errorf("wait condition body %q: %v", b, err)
			}
			s.signals = append(s.signals, waitSignal{r.Header.Get("Content-Type"), body.Status, body.Reason, body.UniqueId})
		case r.URL.Path == "/ccboot":
			_, _ = io.WriteString(w, fakeCcboot)
		case r.URL.Path == "/flaky" && s.hits[r.URL.Path] <= s.failures:
			http.Error(w, "try again", http.StatusInternalServerError)
		case r.URL.Path == "/flaky":
			_, _ = io.WriteString(w, fakeCcboot)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *releaseServer) hitCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *releaseServer) waitSignals() []waitSignal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]waitSignal(nil), s.signals...)
}

type userDataRun struct {
	bashResult
	binDir, confDir, tmpDir, marker string
}

// runUserData runs userdata.sh as UserData would, with every path under a
// temp dir and `uname -m` answering machine.
func runUserData(t *testing.T, machine string, env map[string]string) userDataRun {
	t.Helper()
	dir := t.TempDir()
	r := userDataRun{
		binDir: filepath.Join(dir, "usr/local/bin"), confDir: filepath.Join(dir, "etc/ccboot"),
		tmpDir: filepath.Join(dir, "tmp"), marker: filepath.Join(dir, "ccboot-ran"),
	}
	fakeBin := filepath.Join(dir, "fakebin")
	for _, d := range []string{r.tmpDir, fakeBin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uname := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = -m ]; then echo %s; else exec /usr/bin/uname \"$@\"; fi\n", machine)
	if err := os.WriteFile(filepath.Join(fakeBin, "uname"), []byte(uname), 0o755); err != nil {
		t.Fatal(err)
	}
	full := map[string]string{
		"CCBOOT_BIN_DIR": r.binDir, "CCBOOT_CONF_DIR": r.confDir, "TMPDIR": r.tmpDir, "CCBOOT_TEST_MARKER": r.marker,
	}
	for k, v := range env {
		full[k] = v
	}
	r.bashResult = runBash(t, string(readFile(t, userDataPath)), full, []string{fakeBin})
	return r
}

func (r userDataRun) assertNothingInstalled(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile(r.marker); err == nil {
		t.Errorf("the binary ran although it must not: %q", b)
	}
	for _, p := range []string{filepath.Join(r.binDir, "ccboot"), filepath.Join(r.confDir, "ccboot.conf")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	if left, _ := os.ReadDir(r.tmpDir); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

const (
	readOnlyARN = "arn:aws-us-gov:iam::123456789012:role/claudecode-readonly-test"
	elevatedARN = "arn:aws-us-gov:iam::123456789012:role/claudecode-elevated-test"
)

func TestUserDataInstallsVerifiedBinary(t *testing.T) {
	t.Parallel()
	good := sha256Hex([]byte(fakeCcboot))
	for _, tc := range []struct{ machine, arch, other string }{
		{"aarch64", "ARM64", "AMD64"},
		{"x86_64", "AMD64", "ARM64"},
	} {
		t.Run(tc.machine, func(t *testing.T) {
			t.Parallel()
			srv := newReleaseServer(t, 0)
			r := runUserData(t, tc.machine, map[string]string{
				"CCBOOT_URL_" + tc.arch: srv.URL + "/ccboot", "CCBOOT_SHA256_" + tc.arch: strings.ToUpper(good),
				// The other arch's settings must not be used.
				"CCBOOT_URL_" + tc.other: srv.URL + "/wrong-arch", "CCBOOT_SHA256_" + tc.other: strings.Repeat("0", 64),
				"CCBOOT_READONLY_ROLE_ARN": readOnlyARN, "CCBOOT_ELEVATED_ROLE_ARN": elevatedARN,
				"CCBOOT_MODEL": "eu.anthropic.claude-sonnet-4-6", "CCBOOT_REGION": "eu-west-1",
				"CCBOOT_WAIT_CONDITION_URL": srv.URL + "/wait?X-Amz-Signature=abc&a=b%2Fc",
			})
			if r.code != 0 {
				t.Fatalf("exit %d:\n%s", r.code, r.out)
			}
			if n := srv.hitCount("/wrong-arch"); n != 0 {
				t.Errorf("downloaded the other arch's binary %d times", n)
			}
			bin := filepath.Join(r.binDir, "ccboot")
			fi, err := os.Stat(bin)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o755 {
				t.Errorf("%s mode %v, want 0755", bin, fi.Mode().Perm())
			}
			if got := sha256Hex(readFile(t, bin)); got != good {
				t.Errorf("installed binary sha256 %s, want %s", got, good)
			}
			if got := string(readFile(t, r.marker)); got != "ran: install\n" {
				t.Errorf("ccboot ran as %q, want one `ccboot install`", got)
			}

			conf := filepath.Join(r.confDir, "ccboot.conf")
			fi, err = os.Stat(conf)
			if err != nil {
				t.Fatal(err)
			}
			if uid, _ := fsroot.Owner(fi); fi.Mode().Perm() != 0o644 || (os.Getuid() == 0 && uid != 0) {
				t.Errorf("%s mode %v owner %d, want 0644 root", conf, fi.Mode().Perm(), uid)
			}
			if entries, _ := os.ReadDir(r.confDir); len(entries) != 1 {
				t.Errorf("%s holds %v, want only ccboot.conf (no temp files)", r.confDir, entries)
			}
			f, err := ini.Load(conf)
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range map[string]string{
				"ccboot.wait_condition_url": srv.URL + "/wait?X-Amz-Signature=abc&a=b%2Fc",
				"aws.readonly_role_arn":     readOnlyARN, "aws.elevated_role_arn": elevatedARN,
				"aws.region": "eu-west-1", "bedrock.model": "eu.anthropic.claude-sonnet-4-6",
			} {
				sec, name, _ := strings.Cut(key, ".")
				if got := f.Section(sec).Key(name).String(); got != want {
					t.Errorf("[%s] %s = %q, want %q", sec, name, got, want)
				}
			}
			// ccboot itself accepts the file and reads the same values.
			tree, err := fsroot.Open(r.confDir)
			if err != nil {
				t.Fatal(err)
			}
			defer tree.Close()
			cfg, err := bootstrap.LoadConfig(tree, "ccboot.conf", nil)
			if err != nil {
				t.Fatalf("ccboot rejects the config UserData wrote: %v", err)
			}
			if cfg.ReadOnlyRoleARN != readOnlyARN || cfg.ElevatedRoleARN != elevatedARN || cfg.Region != "eu-west-1" ||
				cfg.Model != "eu.anthropic.claude-sonnet-4-6" || cfg.WaitConditionURL != srv.URL+"/wait?X-Amz-Signature=abc&a=b%2Fc" {
				t.Errorf("ccboot read %+v", cfg)
			}
			if s := srv.waitSignals(); len(s) != 0 {
				t.Errorf("UserData signalled %v on success; that is ccboot's job", s)
			}
		})
	}
}

func TestUserDataRefusesWrongChecksum(t *testing.T) {
	t.Parallel()
	srv := newReleaseServer(t, 0)
	wrong := sha256Hex([]byte("some other build"))
	r := runUserData(t, "x86_64", map[string]string{
		"CCBOOT_URL_AMD64": srv.URL + "/ccboot", "CCBOOT_SHA256_AMD64": wrong,
		"CCBOOT_WAIT_CONDITION_URL": srv.URL + "/wait",
	})
	if r.code == 0 {
		t.Fatalf("exit 0 with a wrong checksum:\n%s", r.out)
	}
	if srv.hitCount("/ccboot") != 1 {
		t.Errorf("downloaded %d times, want 1", srv.hitCount("/ccboot"))
	}
	if !strings.Contains(r.out, "SHA-256 mismatch") || !strings.Contains(r.out, wrong) || !strings.Contains(r.out, sha256Hex([]byte(fakeCcboot))) {
		t.Errorf("the refusal does not name both checksums:\n%s", r.out)
	}
	r.assertNothingInstalled(t)
	// The stack fails now instead of after the WaitCondition's timeout.
	sig := srv.waitSignals()
	if len(sig) != 1 || sig[0].Status != "FAILURE" || !strings.Contains(sig[0].Reason, "SHA-256 mismatch") || sig[0].ContentType != "" {
		t.Errorf("wait condition signals %+v, want one FAILURE naming the mismatch with no Content-Type", sig)
	}
}

func TestUserDataRetriesDownload(t *testing.T) {
	t.Parallel()
	srv := newReleaseServer(t, 2)
	start := time.Now()
	r := runUserData(t, "aarch64", map[string]string{
		"CCBOOT_URL": srv.URL + "/flaky", "CCBOOT_SHA256": sha256Hex([]byte(fakeCcboot)),
	})
	if r.code != 0 {
		t.Fatalf("exit %d after 2 server errors:\n%s", r.code, r.out)
	}
	if n := srv.hitCount("/flaky"); n != 3 {
		t.Errorf("%d requests, want 3 (two 500s, then the file)", n)
	}
	if got := string(readFile(t, r.marker)); got != "ran: install\n" {
		t.Errorf("ccboot ran as %q", got)
	}
	t.Logf("download with 2 retries took %v", time.Since(start).Round(100*time.Millisecond))
}

func TestUserDataRefusals(t *testing.T) {
	t.Parallel()
	good := sha256Hex([]byte(fakeCcboot))
	_, awsErr := exec.LookPath("aws")
	for _, tc := range []struct {
		name     string
		env      func(url string) map[string]string
		want     string
		download bool // whether the binary may have been fetched
		skip     bool
	}{
		{name: "no checksum", env: func(u string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": u + "/ccboot"}
		}, want: "refusing to run an unverified binary"},
		{name: "malformed checksum", env: func(u string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": u + "/ccboot", "CCBOOT_SHA256_AMD64": good[:63] + "g"}
		}, want: "no valid SHA-256"},
		{name: "checksum only for the other arch", env: func(u string) map[string]string {
			return map[string]string{"CCBOOT_URL_ARM64": u + "/ccboot", "CCBOOT_SHA256_ARM64": good}
		}, want: "no ccboot URL for amd64"},
		{name: "unknown tier mode", env: func(u string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": u + "/ccboot", "CCBOOT_SHA256_AMD64": good, "CCBOOT_TIER_MODE": "Enforced"}
		}, want: "CCBOOT_TIER_MODE 'Enforced' must be advisory or enforced"},
		{name: "unsupported scheme", env: func(string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": "ftp://127.0.0.1:1/ccboot", "CCBOOT_SHA256_AMD64": good}
		}, want: "unsupported URL"},
		// Plain http only to a literal loopback IP: refused before curl runs,
		// so none of these names is ever looked up.
		{name: "host that starts with 127.", env: func(string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": "http://127.attacker.example/ccboot", "CCBOOT_SHA256_AMD64": good}
		}, want: "plain http:// only to a loopback IP"},
		{name: "userinfo trick", env: func(string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": "http://localhost:x@attacker.example/ccboot", "CCBOOT_SHA256_AMD64": good}
		}, want: "plain http:// only to a loopback IP"},
		{name: "loopback IP as userinfo", env: func(string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": "http://127.0.0.1:80@attacker.example/ccboot", "CCBOOT_SHA256_AMD64": good}
		}, want: "plain http:// only to a loopback IP"},
		{name: "a name, not a loopback IP", env: func(u string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": strings.Replace(u, "127.0.0.1", "localhost", 1) + "/ccboot", "CCBOOT_SHA256_AMD64": good}
		}, want: "plain http:// only to a loopback IP"},
		{name: "octet out of range", env: func(string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": "http://127.0.0.256/ccboot", "CCBOOT_SHA256_AMD64": good}
		}, want: "plain http:// only to a loopback IP"},
		{name: "value ccboot.conf cannot hold", env: func(u string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": u + "/ccboot", "CCBOOT_SHA256_AMD64": good, "CCBOOT_MODEL": "a model; rm -rf /"}
		}, want: "which ccboot.conf cannot hold"},
		{name: "s3 without aws CLI", skip: awsErr == nil, env: func(string) map[string]string {
			return map[string]string{"CCBOOT_URL_AMD64": "s3://bucket/ccboot", "CCBOOT_SHA256_AMD64": good}
		}, want: "the aws CLI is not installed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.skip {
				t.Skip("the aws CLI is installed here")
			}
			srv := newReleaseServer(t, 0)
			env := tc.env(srv.URL)
			env["CCBOOT_WAIT_CONDITION_URL"] = srv.URL + "/wait"
			r := runUserData(t, "x86_64", env)
			if r.code == 0 || !strings.Contains(r.out, tc.want) {
				t.Errorf("exit %d, want non-zero with %q:\n%s", r.code, tc.want, r.out)
			}
			if n := srv.hitCount("/ccboot"); n != 0 {
				t.Errorf("downloaded %d times before refusing", n)
			}
			r.assertNothingInstalled(t)
			if sig := srv.waitSignals(); len(sig) != 1 || sig[0].Status != "FAILURE" {
				t.Errorf("wait condition signals %+v, want one FAILURE", sig)
			}
		})
	}
}

// The wait condition URL carries its signature: plain http to anything but
// a loopback IP is refused before anything is downloaded or signalled.
func TestUserDataRefusesPlainHTTPWaitURL(t *testing.T) {
	t.Parallel()
	srv := newReleaseServer(t, 0)
	r := runUserData(t, "x86_64", map[string]string{
		"CCBOOT_URL_AMD64": srv.URL + "/ccboot", "CCBOOT_SHA256_AMD64": sha256Hex([]byte(fakeCcboot)),
		"CCBOOT_WAIT_CONDITION_URL": "http://127.attacker.example/wait?X-Amz-Signature=abc",
	})
	if r.code == 0 || !strings.Contains(r.out, "must be https://") {
		t.Errorf("exit %d, want non-zero naming https:\n%s", r.code, r.out)
	}
	if n := srv.hitCount("/ccboot"); n != 0 {
		t.Errorf("downloaded %d times before refusing", n)
	}
	r.assertNothingInstalled(t)
}

// When ccboot install fails before it could signal (exit 3: bad config),
// UserData fails the stack itself and exits non-zero for cloud-init.
func TestUserDataReportsFailedInstall(t *testing.T) {
	t.Parallel()
	srv := newReleaseServer(t, 0)
	r := runUserData(t, "x86_64", map[string]string{
		"CCBOOT_URL_AMD64": srv.URL + "/ccboot", "CCBOOT_SHA256_AMD64": sha256Hex([]byte(fakeCcboot)),
		"CCBOOT_WAIT_CONDITION_URL": srv.URL + "/wait", "FAKE_CCBOOT_EXIT": "3",
	})
	if r.code == 0 {
		t.Fatalf("exit 0 although ccboot install failed:\n%s", r.out)
	}
	if got := string(readFile(t, r.marker)); got != "ran: install\n" {
		t.Errorf("ccboot ran as %q", got)
	}
	if sig := srv.waitSignals(); len(sig) != 1 || sig[0].Status != "FAILURE" || !strings.Contains(sig[0].Reason, "exited 3") {
		t.Errorf("wait condition signals %+v, want one FAILURE naming exit 3", sig)
	}
}

// CCBOOT_TIER_MODE (the template's TierMode): enforced is written as
// [tiers] mode = enforced; advisory, ccboot's default, writes no key, so the
// config is byte for byte what it was without the setting.
func TestUserDataTierMode(t *testing.T) {
	t.Parallel()
	good := sha256Hex([]byte(fakeCcboot))
	srv := newReleaseServer(t, 0)
	conf := map[string]string{}
	for _, mode := range []string{"", advisory, enforced} {
		r := runUserData(t, "x86_64", map[string]string{"CCBOOT_URL_AMD64": srv.URL + "/ccboot", "CCBOOT_SHA256_AMD64": good,
			"CCBOOT_MODEL": "eu.anthropic.claude-sonnet-4-6", "CCBOOT_TIER_MODE": mode})
		if r.code != 0 {
			t.Fatalf("CCBOOT_TIER_MODE=%q: exit %d:\n%s", mode, r.code, r.out)
		}
		conf[mode] = string(readFile(t, filepath.Join(r.confDir, "ccboot.conf")))
		got, err := iniTierMode(conf[mode])
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"": "", advisory: "", enforced: enforced}[mode]
		if got != want {
			t.Errorf("CCBOOT_TIER_MODE=%q: [tiers] mode = %q, want %q\n%s", mode, got, want, conf[mode])
		}
		tree, err := fsroot.Open(r.confDir)
		if err != nil {
			t.Fatal(err)
		}
		_, err = bootstrap.LoadConfig(tree, "ccboot.conf", nil)
		tree.Close()
		switch {
		case mode != enforced || configKnows("tiers", "mode"):
			if err != nil {
				t.Errorf("CCBOOT_TIER_MODE=%q: ccboot rejects the config: %v", mode, err)
			}
		case err == nil:
			t.Errorf("a ccboot without [tiers] mode read mode = enforced: it would run advisory on an instance meant to be enforced")
		}
	}
	if conf[advisory] != conf[""] {
		t.Errorf("CCBOOT_TIER_MODE=advisory changed the config:\n%s\nwant\n%s", conf[advisory], conf[""])
	}
	if !strings.HasSuffix(conf[enforced], "\n[tiers]\nmode = enforced\n") || strings.TrimSuffix(conf[enforced], "\n[tiers]\nmode = enforced\n") != conf[""] {
		t.Errorf("enforced config is not the advisory one plus [tiers] mode = enforced:\n%s", conf[enforced])
	}
}
