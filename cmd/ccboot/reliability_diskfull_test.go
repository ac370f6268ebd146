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
	"testing"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// diskFullScript runs in a private mount namespace: it copies the root onto
// a 64 MiB tmpfs, runs ccboot there with a swap file larger than the free
// space, records free space before and after, and copies the result out.
const diskFullScript = `set -eu
mnt=$1 src=$2 out=$3 bin=$4 imds=$5
mount -t tmpfs -o size=64m,mode=0755 ccboot-diskfull "$mnt"
cp -a "$src/." "$mnt/"
df -B1 --output=avail "$mnt" | tail -1 > "$out.avail-before"
set +e
"$bin" run --root "$mnt" --imds-endpoint "$imds" --set swap.size=128M > "$out.stdout" 2> "$out.stderr"
echo $? > "$out.code"
set -e
df -B1 --output=avail "$mnt" | tail -1 > "$out.avail-after"
cp -a "$mnt/." "$out/"
`

// TestReliabilityDiskFull makes the swap file not fit: no partial swap file
// may remain (nor its temp file, nor the space it took), /etc/fstab must be
// untouched, the error must say what to do, and every other step must
// still converge.
func TestReliabilityDiskFull(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("disk-full: skipped: unshare(1) not installed")
	}
	probe := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o size=1m probe \"$1\"", "sh", t.TempDir())
	if out, err := probe.CombinedOutput(); err != nil {
		fmtSkip(t, "disk-full: skipped: cannot mount a tmpfs in a private mount namespace here ("+strings.TrimSpace(string(out))+")")
	}
	// Deferred, so the figure line is printed even when a check stops the test.
	defer func() { figureOK(t, "disk-full", !t.Failed()) }()
	imds := aemmtest.Start(t, aemmtest.Default())
	src := newRoot(t)
	fstabBefore, err := os.ReadFile(filepath.Join(src, "etc/fstab"))
	if err != nil {
		t.Fatal(err)
	}
	mnt, out := t.TempDir(), filepath.Join(t.TempDir(), "root")
	mustMkdir(t, out)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", diskFullScript, "sh", mnt, src, out, ccbootBin, imds)
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("namespace script: %v\n%s", err, b)
	}
	read := func(suffix string) string {
		b, _ := os.ReadFile(out + suffix)
		return strings.TrimSpace(string(b))
	}
	fail := t.Errorf
	stdout := read(".stdout")
	if code := read(".code"); code != "1" {
		fail("exit %s, want 1\n%s\n%s", code, stdout, read(".stderr"))
	}
	swapLine := stepLine(stdout, "swap")
	for _, w := range []string{" failed ", "no space left on device", "free 128 MiB", "[swap] size = off"} {
		if !strings.Contains(swapLine, w) {
			fail("swap error lacks %q:\n%s", w, swapLine)
		}
	}
	for _, step := range []string{"profile-env", "aws-config", "aliases", "docker-group"} {
		if !strings.Contains(stepLine(stdout, step), " changed ") {
			fail("%s did not converge next to the failed swap step:\n%s", step, stdout)
		}
	}
	for _, name := range []string{"swapfile", ".swapfile.ccboot-new"} {
		if _, err := os.Lstat(filepath.Join(out, name)); !errors.Is(err, fs.ErrNotExist) {
			fail("%s exists after the swap file did not fit", name)
		}
	}
	if l := leftovers(t, out); len(l) > 0 {
		fail("left behind: %v", l)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "etc/fstab")); !bytes.Equal(got, fstabBefore) {
		fail("fstab changed although there is no swap file:\n%s", got)
	}
	// The space the failed allocation took is given back (a removed temp
	// file still held open would keep it). The small files the other steps
	// wrote take a little.
	before, _ := strconv.ParseInt(read(".avail-before"), 10, 64)
	after, _ := strconv.ParseInt(read(".avail-after"), 10, 64)
	if before-after > 1<<20 {
		fail("free space went from %d to %d bytes: the failed swap file's space was not given back", before, after)
	}
}

// fmtSkip prints the figure's skip reason where the figures go, then skips.
func fmtSkip(t *testing.T, reason string) {
	t.Helper()
	os.Stdout.WriteString(reason + "\n")
	t.Skip(reason)
}
