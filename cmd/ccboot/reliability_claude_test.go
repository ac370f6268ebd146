//go:build reliability

package main

import (
	"bytes"
	"errors"
	"io/fs"
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
	root = newRoot(t)
	for _, p := range []string{"usr/local/lib/claude-code", "usr/local/bin/claude"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	srv = claudetest.New()
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

	total.Add(1)
	t.Run("disk full mid-download", func(t *testing.T) {
		t.Parallel()
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("unshare(1) not installed")
		}
		// 1.0.1 is larger than the tmpfs has room for.
		root, srv, exe := claudeFaultRoot(t, 4<<20)
		srv.Add("1.0.1", x64, claudetest.Executable("1.0.1", 40<<20))
		if r := runBin(t, ccbootBin, nil, claudeArgs(root, imds, srv, "1.0.0")...); r.code != 0 {
			t.Fatalf("install 1.0.0: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		mnt, out := t.TempDir(), filepath.Join(t.TempDir(), "root")
		mustMkdir(t, out)
		args := claudeArgs(mnt, imds, srv, "1.0.1")
		script := `set -eu
mnt=$1 src=$2 out=$3 bin=$4; shift 4
mount -t tmpfs -o size=24m,mode=0755 ccboot-claude-full "$mnt"
cp -a "$src/." "$mnt/"
df -B1 --output=avail "$mnt" | tail -1 > "$out.avail-before"
set +e
"$bin" "$@" > "$out.stdout" 2> "$out.stderr"
echo $? > "$out.code"
set -e
df -B1 --output=avail "$mnt" | tail -1 > "$out.avail-after"
cp -a "$mnt/." "$out/"
`
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", mnt, root, out, ccbootBin}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET=")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("namespace script: %v\n%s", err, b)
		}
		read := func(suffix string) string {
			b, _ := os.ReadFile(out + suffix)
			return strings.TrimSpace(string(b))
		}
		if code := read(".code"); code != "1" {
			t.Fatalf("exit %s, want 1\n%s\n%s", code, read(".stdout"), read(".stderr"))
		}
		line := stepLine(read(".stdout"), "claude-code")
		for _, w := range []string{"no space left on device", "free space under"} {
			if !strings.Contains(line, w) {
				t.Errorf("claude-code line lacks %q:\n%s", w, line)
			}
		}
		if got := srv.Requests(claudetest.ExePath("1.0.1", x64)); got != 1 {
			t.Errorf("a full disk was retried: %d requests", got)
		}
		claudeIntact(t, out, exe("1.0.0"), "after the disk filled")
		if _, err := os.Stat(filepath.Join(out, "usr/local/lib/claude-code/versions/1.0.1/claude")); !errors.Is(err, fs.ErrNotExist) {
			t.Error("a partial 1.0.1 executable exists")
		}
		before, _ := strconv.ParseInt(read(".avail-before"), 10, 64)
		after, _ := strconv.ParseInt(read(".avail-after"), 10, 64)
		if before-after > 1<<20 {
			t.Errorf("free space went from %d to %d bytes: the partial download's space was not given back", before, after)
		}
		if !t.Failed() {
			ok.Add(1)
		}
	})

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
