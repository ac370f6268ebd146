//go:build reliability

package main

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
	"github.com/ccboot/ccboot/steps/claudetest"
)

// claudeFaultRoot is a root with Claude Code 1.0.0 installed by ccboot and
// a loopback release channel offering 1.0.0 and 1.0.1 (size bytes each).
func claudeFaultRoot(t *testing.T, size int) (root string, srv *claudetest.Server, exe func(string) []byte) {
	t.Helper()
	return claudeFaultRootOn(t, size, claudetest.New())
}

// claudeFaultRootOn is claudeFaultRoot with the given server (an https one).
func claudeFaultRootOn(t *testing.T, size int, srv *claudetest.Server) (root string, _ *claudetest.Server, exe func(string) []byte) {
	t.Helper()
	root = newRoot(t)
	for _, p := range []string{"usr/local/lib/claude-code", "usr/local/bin/claude"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(srv.Close)
	exe = func(v string) []byte { return claudetest.Executable(v, size) }
	srv.Add("1.0.0", "linux-x64", exe("1.0.0"))
	srv.Add("1.0.1", "linux-x64", exe("1.0.1"))
	if _, err := srv.WriteKey(root); err != nil {
		t.Fatal(err)
	}
	return root, srv, exe
}

func claudeArgs(root, imds string, srv *claudetest.Server, version string, extra ...string) []string {
	return append([]string{"repair", "--root", root, "--only", "claude-code", "--imds-endpoint", imds,
		"--set", "claude-code.version=" + version, "--set", "claude-code.release_url=" + srv.ReleaseURL(),
		"--set", "claude-code.registry=" + srv.RegistryURL(), "--set", "claude-code.stall_timeout=1s",
		"--set", "claude-code.signing_key=" + claudetest.KeyPath}, extra...)
}

// claudeIntact: PREFIX/bin/claude resolves to exactly want; no temp file
// and no stray link is left.
func claudeIntact(t *testing.T, root string, want []byte, what string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(root, "usr/local/bin/claude"))
	if err != nil {
		t.Errorf("%s: PREFIX/bin/claude does not resolve: %v", what, err)
	} else if !bytes.Equal(got, want) {
		t.Errorf("%s: PREFIX/bin/claude resolves to %d other bytes", what, len(got))
	}
	if l := leftovers(t, root); len(l) > 0 {
		t.Errorf("%s: left behind: %v", what, l)
	}
}

// TestReliabilityClaudeDownloadFaults: each fault of the release channel
// (and the disk, and a kill -9 during the download and the link switch)
// leaves a working previous version, no partial file and no dangling
// PREFIX/bin/claude; transient faults are retried to success.
func TestReliabilityClaudeDownloadFaults(t *testing.T) {
	t.Parallel()
	imds := aemmtest.Start(t, aemmtest.Default())
	var ok, total atomic.Int32
	t.Cleanup(func() { figure(t, "claude-download-faults", int(ok.Load()), int(total.Load())) })
	const x64 = "linux-x64"
	exePath := claudetest.ExePath("1.0.1", x64)
	const signed = "2.1.332"
	addSigned := func(s *claudetest.Server) { s.Add(signed, x64, claudetest.Executable(signed, 1<<20)) }
	cases := []struct {
		name    string
		version string
		extra   []string
		setup   func(*claudetest.Server)
		code    int
		want    []string
		reqs    int // requests to 1.0.1's executable (-1: not checked)
	}{
		{"checksum mismatch", "1.0.1", nil, func(s *claudetest.Server) { s.Corrupt("1.0.1", x64, claudetest.Executable("tampered", 1<<20)) },
			1, []string{"checksum mismatch", claudetest.SHA256(claudetest.Executable("tampered", 1<<20)), claudetest.SHA256(claudetest.Executable("1.0.1", 1<<20)), exePath}, 1},
		{"truncated body, then whole", "1.0.1", nil, func(s *claudetest.Server) { s.Fail(exePath, claudetest.Truncate) }, 0, nil, 2},
		{"500, then success", "1.0.1", nil, func(s *claudetest.Server) { s.Fail(exePath, claudetest.Status500) }, 0, nil, 2},
		{"404: unknown version", "9.9.9", nil, nil, 1, []string{"version 9.9.9 is unknown", "[claude-code] version"}, -1},
		{"manifest without this platform", "1.0.1", nil, func(s *claudetest.Server) { s.HidePlatform("1.0.1", x64) }, 1, []string{"no build for linux-x64"}, 0},
		{"stall past the timeout, every attempt", "1.0.1", []string{"--set", "claude-code.retries=2"},
			func(s *claudetest.Server) { s.Fail(exePath, claudetest.Stall, claudetest.Stall) }, 1, []string{"no data for 1s", "stall_timeout", "attempt 2 of 2"}, 2},
		// Signed releases (2.1.89 on): the signature is checked before the
		// executable is requested. KEY and OTHER stand for the trusted and
		// the other key's fingerprints.
		{"unsigned manifest", signed, nil, func(s *claudetest.Server) { addSigned(s); s.Unsign(signed) },
			1, []string{claudetest.SigPath(signed) + " is missing (404)", "expected a signature by key KEY, signer none"}, 0},
		{"signature by another key", signed, nil, func(s *claudetest.Server) { addSigned(s); s.SignWithOtherKey(signed) },
			1, []string{claudetest.SigPath(signed), "by another key", "expected key KEY, signer OTHER"}, 0},
		{"manifest changed after signing", signed, nil, func(s *claudetest.Server) {
			addSigned(s)
			s.Forge(signed, x64, claudetest.Executable("tampered", 1<<20))
		}, 1, []string{claudetest.SigPath(signed), "does not verify", "expected key KEY, signer KEY"}, 0},
		{"signature over another version's manifest", signed, nil, func(s *claudetest.Server) { addSigned(s); s.ReplaySignature(signed, "1.0.1") },
			1, []string{claudetest.SigPath(signed), "does not verify", "expected key KEY"}, 0},
	}
	for _, tc := range cases {
		total.Add(1)
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, srv, exe := claudeFaultRoot(t, 1<<20)
			if r := runBin(t, ccbootBin, nil, claudeArgs(root, imds, srv, "1.0.0")...); r.code != 0 {
				t.Fatalf("install 1.0.0: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if tc.setup != nil {
				tc.setup(srv)
			}
			r := runBin(t, ccbootBin, nil, claudeArgs(root, imds, srv, tc.version, tc.extra...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, tc.code, r.stdout, r.stderr)
			}
			line := stepLine(r.stdout, "claude-code")
			for _, w := range tc.want {
				w = strings.NewReplacer("KEY", srv.Signer().Fingerprint(), "OTHER", srv.OtherSigner().Fingerprint()).Replace(w)
				if !strings.Contains(line, w) {
					t.Errorf("claude-code line lacks %q:\n%s", w, line)
				}
			}
			want := exe("1.0.0")
			if tc.code == 0 {
				want = exe("1.0.1")
			}
			claudeIntact(t, root, want, "after the fault")
			if tc.reqs >= 0 {
				if got := srv.Requests(claudetest.ExePath(tc.version, x64)); got != tc.reqs {
					t.Errorf("requests for the executable: %d, want %d", got, tc.reqs)
				}
			}
			if !t.Failed() {
				ok.Add(1)
			}
		})
	}

	// A hostile or broken source, each run on a small tmpfs in a private
	// mount namespace with a file size limit: the refusal comes before
	// the disk fills and before any file grows past the limit, on the
	// first attempt, as one line naming the cause and the fix, and
	// nothing is left behind.
	_, noUnshare := exec.LookPath("unshare")
	_, noPrlimit := exec.LookPath("prlimit")
	var local atomic.Int32 // requests to the loopback "services" below
	service := func(network, addr string) string {
		l, err := net.Listen(network, addr)
		if err != nil {
			return ""
		}
		srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { local.Add(1) })}}
		srv.Start()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	docker, admin6 := service("tcp", "127.0.0.1:0"), service("tcp", "[::1]:0")
	tarPath := claudetest.TarballPath("1.0.1", x64)
	for _, tc := range []struct {
		name    string
		npm     bool
		tls     bool
		tmpfs   string
		exeSize int // 1.0.1's size (1 MiB unless set)
		setup   func(*claudetest.Server)
		want    []string
		reqs    int   // requests for 1.0.1's executable or tarball
		peak    int64 // bytes one file may take (RLIMIT_FSIZE)
	}{
		{name: "sparse npm tarball claiming 100 GiB", npm: true, tmpfs: "128m",
			setup: func(s *claudetest.Server) { s.Publish("1.0.1", x64, claudetest.SparseTarball(100<<30)) },
			want:  []string{"has a sparse entry \"package/claude\"", "not a Claude Code platform package", "check [claude-code] registry"}, reqs: 1, peak: 1 << 20},
		{name: "npm package/claude larger than the 2 GiB cap", npm: true, tmpfs: "128m",
			setup: func(s *claudetest.Server) { s.Publish("1.0.1", x64, claudetest.OversizedTarball(3<<30)) },
			want:  []string{"declares 3221225472 bytes", "cap of 2 GiB", "nothing was downloaded"}, reqs: 1, peak: 1 << 20},
		{name: "endless release body", tmpfs: "128m",
			setup: func(s *claudetest.Server) { s.Fail(exePath, claudetest.Endless) },
			want:  []string{exePath, "sends more than the 1048576 bytes declared", "nothing was installed"}, reqs: 1, peak: 3 << 20},
		{name: "disk too small for the declared size", tmpfs: "24m", exeSize: 40 << 20,
			want: []string{"needs 40 MiB plus 64 MiB to spare", "free space there and rerun", "nothing was downloaded"}, reqs: 0, peak: 1 << 20},
		{name: "loopback http redirect from an https origin", tls: true, tmpfs: "128m",
			setup: func(s *claudetest.Server) { s.Redirect(exePath, docker+"/containers/json") },
			want:  []string{"refusing a redirect from https://127.0.0.1:", "to " + docker + "/containers/json", "not https"}, reqs: 1, peak: 1 << 20},
		{name: "npm dist.tarball on [::1] http from an https registry", npm: true, tls: true, tmpfs: "128m",
			setup: func(s *claudetest.Server) { s.SetTarballURL("1.0.1", x64, admin6+"/admin") },
			want:  []string{"dist.tarball", admin6 + "/admin", "not an https URL"}, reqs: 0, peak: 1 << 20},
	} {
		if tc.name == "npm dist.tarball on [::1] http from an https registry" && admin6 == "" {
			continue // no IPv6 loopback here
		}
		total.Add(1)
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if noUnshare != nil || noPrlimit != nil {
				t.Skip("unshare(1) or prlimit(1) not installed")
			}
			srv := claudetest.New()
			var env []string
			if tc.tls {
				srv = claudetest.NewTLS()
				ca := filepath.Join(t.TempDir(), "ca.pem")
				if err := os.WriteFile(ca, srv.CertPEM(), 0o644); err != nil {
					t.Fatal(err)
				}
				env = []string{"SSL_CERT_FILE=" + ca, "HTTPS_PROXY=", "https_proxy=", "HTTP_PROXY=", "http_proxy="}
			}
			root, srv, exe := claudeFaultRootOn(t, 1<<20, srv)
			if tc.exeSize > 0 {
				srv.Add("1.0.1", x64, claudetest.Executable("1.0.1", tc.exeSize))
			}
			var extra []string
			path := exePath
			if tc.npm {
				extra, path = []string{"--set", "claude-code.source=npm"}, tarPath
			}
			if r := runBin(t, ccbootBin, env, claudeArgs(root, imds, srv, "1.0.0", extra...)...); r.code != 0 {
				t.Fatalf("install 1.0.0: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if tc.setup != nil {
				tc.setup(srv)
			}
			before := local.Load()
			r := runInTmpfs(t, root, tc.tmpfs, tc.peak, env, func(mnt string) []string { return claudeArgs(mnt, imds, srv, "1.0.1", extra...) })
			if r.code != "1" {
				t.Fatalf("exit %s, want 1\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			line := stepLine(r.stdout, "claude-code")
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("claude-code line lacks %q:\n%s", w, line)
				}
			}
			if strings.Contains(line, "no space left") || strings.Contains(line, "file too large") {
				t.Errorf("the download ran into the tmpfs's size or the file size limit instead of being refused:\n%s", line)
			}
			if got := srv.Requests(path); got != tc.reqs {
				t.Errorf("requests for %s: %d, want %d", path, got, tc.reqs)
			}
			if n := local.Load() - before; n != 0 {
				t.Errorf("a loopback service got %d requests", n)
			}
			if r.before-r.after > 1<<20 {
				t.Errorf("free space went from %d to %d bytes: the refused download's space was not given back", r.before, r.after)
			}
			claudeIntact(t, r.root, exe("1.0.0"), "after the refusal")
			if _, err := os.Stat(filepath.Join(r.root, "usr/local/lib/claude-code/versions/1.0.1")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the refused 1.0.1 left its directory: %v", err)
			}
			t.Logf("bytes the server sent: %d", srv.Sent(path))
			if !t.Failed() {
				ok.Add(1)
			}
		})
	}

	// kill -9 at every crash point of an upgrade's download and link switch.
	bin := crashBinary(t)
	ref, refSrv, _ := claudeFaultRoot(t, 1<<20)
	if r := runBin(t, ccbootBin, nil, claudeArgs(ref, imds, refSrv, "1.0.0")...); r.code != 0 {
		t.Fatalf("install 1.0.0: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pointsFile := filepath.Join(t.TempDir(), "points")
	if r := runBin(t, bin, []string{"CCBOOT_CRASH_LOG=" + pointsFile}, claudeArgs(ref, imds, refSrv, "1.0.1")...); r.code != 0 {
		t.Fatalf("uninterrupted upgrade: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	data, err := os.ReadFile(pointsFile)
	if err != nil {
		t.Fatal(err)
	}
	var points []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.Contains(l, "claude") && !strings.HasPrefix(l, "step/") {
			points = append(points, l)
		}
	}
	if len(points) < 6 {
		t.Fatalf("only %d crash points in the download and link switch: %q", len(points), points)
	}
	for _, point := range points {
		total.Add(1)
		t.Run("kill -9 at "+point, func(t *testing.T) {
			t.Parallel()
			root, srv, exe := claudeFaultRoot(t, 1<<20)
			if r := runBin(t, ccbootBin, nil, claudeArgs(root, imds, srv, "1.0.0")...); r.code != 0 {
				t.Fatalf("install 1.0.0: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			killed := runBin(t, bin, []string{"CCBOOT_CRASH_AT=" + point}, claudeArgs(root, imds, srv, "1.0.1")...)
			if !killed.signaled {
				t.Fatalf("not killed at %q: exit %d\n%s%s", point, killed.code, killed.stdout, killed.stderr)
			}
			// Right after the kill: one whole version runs, old or new.
			got, err := os.ReadFile(filepath.Join(root, "usr/local/bin/claude"))
			if err != nil || (!bytes.Equal(got, exe("1.0.0")) && !bytes.Equal(got, exe("1.0.1"))) {
				t.Errorf("after kill -9 at %q PREFIX/bin/claude is not a whole version (%v)", point, err)
			}
			again := runBin(t, ccbootBin, nil, claudeArgs(root, imds, srv, "1.0.1")...)
			if again.code != 0 {
				t.Fatalf("repair after the kill: exit %d\n%s%s", again.code, again.stdout, again.stderr)
			}
			claudeIntact(t, root, exe("1.0.1"), "after kill -9 and repair")
			if !t.Failed() {
				ok.Add(1)
			}
		})
	}
}

// tmpfsScript runs ccboot in a private mount namespace on a tmpfs of the
// given size holding a copy of the root, with RLIMIT_FSIZE at fsize bytes
// (a write past it fails with EFBIG: the kernel bounds what one file can
// take), records the free space before and after, and copies the result
// out.
const tmpfsScript = `set -eu
mnt=$1 src=$2 out=$3 size=$4 fsize=$5 bin=$6; shift 6
mount -t tmpfs -o size="$size",mode=0755 ccboot-claude-faults "$mnt"
cp -a "$src/." "$mnt/"
df -B1 --output=avail "$mnt" | tail -1 > "$out.avail-before"
set +e
prlimit --fsize="$fsize" "$bin" "$@" > "$out.stdout" 2> "$out.stderr"
echo $? > "$out.code"
set -e
df -B1 --output=avail "$mnt" | tail -1 > "$out.avail-after"
cp -a "$mnt/." "$out/"
`

type tmpfsRun struct {
	code, stdout, stderr string
	before, after        int64  // free bytes on the tmpfs
	root                 string // the tree as the run left it
}

// runInTmpfs copies root onto a tmpfs of size and runs ccboot there, no
// file larger than fsize bytes, with the arguments args builds for the
// mount point.
func runInTmpfs(t *testing.T, root, size string, fsize int64, env []string, args func(mnt string) []string) tmpfsRun {
	t.Helper()
	mnt, out := t.TempDir(), filepath.Join(t.TempDir(), "root")
	mustMkdir(t, out)
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", tmpfsScript, "sh", mnt, root, out, size, strconv.FormatInt(fsize, 10), ccbootBin}, args(mnt)...)...)
	cmd.Env = append(append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET="), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("namespace script: %v\n%s", err, b)
	}
	read := func(suffix string) string {
		b, _ := os.ReadFile(out + suffix)
		return strings.TrimSpace(string(b))
	}
	num := func(suffix string) int64 {
		n, err := strconv.ParseInt(read(suffix), 10, 64)
		if err != nil {
			t.Fatalf("free space %s: %v", suffix, err)
		}
		return n
	}
	return tmpfsRun{code: read(".code"), stdout: read(".stdout"), stderr: read(".stderr"),
		before: num(".avail-before"), after: num(".avail-after"), root: out}
}
