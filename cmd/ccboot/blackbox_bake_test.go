package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// countingListener is an IMDS endpoint on loopback that only counts who
// connects: a bake must never ask the metadata service.
func countingListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return "http://" + l.Addr().String(), &n
}

// plantBuilderInstanceData leaves what a builder instance has on its disk
// after it booted and ran ccboot: none of it may end up in the image.
func plantBuilderInstanceData(t *testing.T, root string) []string {
	t.Helper()
	files := map[string]string{
		"var/lib/ccboot/state.json":   `{"instance_id":"i-0builder000000000"}`,
		"var/log/ccboot.log":          "{}\n",
		"run/ccboot/lock":             "123\n",
		"var/lib/ccboot/created.json": "[]",
		"var/lib/cloud/instances/i-0builder000000000/boot-finished": "",
		"var/lib/cloud/data/instance-id":                            "i-0builder000000000\n",
		"var/log/cloud-init.log":                                    "builder\n",
		"var/log/cloud-init-output.log":                             "builder\n",
	}
	var paths []string
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, name)
	}
	if err := os.Symlink("/var/lib/cloud/instances/i-0builder000000000", filepath.Join(root, "var/lib/cloud/instance")); err != nil {
		t.Fatal(err)
	}
	return append(paths, "var/lib/cloud/instance")
}

// TestBlackboxBakeThenBootAsNewInstances bakes a root offline (no IMDS),
// then boots it as two different instances: each boot applies only the
// instance steps and writes nothing the bake put in the image.
func TestBlackboxBakeThenBootAsNewInstances(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	leftovers := plantBuilderInstanceData(t, root)
	bashrc := filepath.Join(root, "home/ec2-user/.bashrc")
	bashrcBefore, _ := os.ReadFile(bashrc)
	imds, asked := countingListener(t)

	bake := ccboot(t, "bake", "--root", root, "--imds-endpoint", imds)
	if bake.code != 0 {
		t.Fatalf("bake exit %d\n%s%s", bake.code, bake.stdout, bake.stderr)
	}
	for _, want := range []string{"packages      ok", "claude-code   ok", "docker-group  changed", "imds-filter   ok", "baked: ccboot"} {
		if !strings.Contains(bake.stdout, want) {
			t.Errorf("bake output lacks %q:\n%s", want, bake.stdout)
		}
	}
	for _, instanceStep := range []string{"swap", "profile-env", "aws-config", "aliases"} {
		if strings.Contains(bake.stdout, instanceStep+" ") {
			t.Errorf("bake ran instance step %s:\n%s", instanceStep, bake.stdout)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("bake connected to IMDS %d times; it must need none", n)
	}
	// ccboot itself, enabled.
	self, _ := os.ReadFile(ccbootBin)
	if got, err := os.ReadFile(filepath.Join(root, bootstrap.InstalledBinary)); err != nil || !bytes.Equal(got, self) {
		t.Errorf("bake did not install this binary at %s: %v", bootstrap.InstalledBinary, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/ccboot.service")); err != nil {
		t.Errorf("ccboot.service not enabled in the image: %v", err)
	}
	var rec bootstrap.BakeRecord
	if data, err := os.ReadFile(filepath.Join(root, bootstrap.BakeRecordPath)); err != nil || json.Unmarshal(data, &rec) != nil || len(rec.Steps) != 5 {
		t.Errorf("bake record %s: %v %+v", bootstrap.BakeRecordPath, err, rec)
	}
	// Nothing of an instance: not the builder's, not a new one's.
	for _, p := range leftovers {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("instance data %s is still in the baked image", p)
		}
	}
	for _, p := range []string{"swapfile", "etc/profile.d/claude-bedrock.sh", "home/ec2-user/.aws", "var/lib/ccboot/state.json", "var/log/ccboot.log"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("bake wrote %s, which belongs to an instance", p)
		}
	}
	if got, _ := os.ReadFile(bashrc); !bytes.Equal(got, bashrcBefore) {
		t.Errorf("bake changed the user's .bashrc:\n%s", got)
	}
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if !strings.Contains(string(group), "\ndocker:x:") || strings.Contains(string(group), "docker:x:999:ec2-user") {
		t.Errorf("bake: want group docker without members (the user joins at boot):\n%s", group)
	}

	check := ccboot(t, "bake", "--check", "--root", root, "--imds-endpoint", imds)
	if check.code != 0 || !strings.Contains(check.stdout, "image is baked and in sync") {
		t.Fatalf("bake --check on a baked image: exit %d\n%s%s", check.code, check.stdout, check.stderr)
	}

	// The image's files, which no boot may write.
	imageFiles := []string{bootstrap.InstalledBinary, bootstrap.UnitPath, bootstrap.BakeRecordPath, "var/lib/dpkg/status", "usr/lib/systemd/system/docker.service"}
	imageStamps := func() map[string]fileStamp {
		m := map[string]fileStamp{}
		for _, f := range imageFiles {
			fi, err := os.Stat(filepath.Join(root, f))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			m[f] = fileStamp{fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()}
		}
		return m
	}
	baked := imageStamps()

	for i, inst := range []aemmtest.Instance{
		aemmtest.Default(),
		{Region: "ap-southeast-2", AZ: "ap-southeast-2a", Account: "444455556666", InstanceID: "i-0fedcba9876543210", Partition: "aws",
			ProfileARN: "arn:aws:iam::444455556666:instance-profile/claudecode-ec2-fleet"},
	} {
		endpoint := aemmtest.Start(t, inst)
		boot := ccboot(t, "run", "--root", root, "--imds-endpoint", endpoint)
		if boot.code != 0 {
			t.Fatalf("boot %d: exit %d\n%s%s", i+1, boot.code, boot.stdout, boot.stderr)
		}
		for _, want := range []string{"packages      ok", "claude-code   ok", "aws-config    changed", "profile-env   changed"} {
			if !strings.Contains(boot.stdout, want) {
				t.Errorf("boot %d output lacks %q:\n%s", i+1, want, boot.stdout)
			}
		}
		aws, _ := os.ReadFile(filepath.Join(root, "home/ec2-user/.aws/config"))
		wantRole := "role_arn = arn:aws:iam::" + inst.Account + ":role/claudecode-readonly-" + strings.TrimPrefix(inst.ProfileARN[strings.LastIndex(inst.ProfileARN, "/")+1:], "claudecode-ec2-")
		if !strings.Contains(string(aws), "region = "+inst.Region) || !strings.Contains(string(aws), wantRole) {
			t.Errorf("boot %d: ~/.aws/config is not this instance's (want region %s, %q):\n%s", i+1, inst.Region, wantRole, aws)
		}
		profile, _ := os.ReadFile(filepath.Join(root, "etc/profile.d/claude-bedrock.sh"))
		if !strings.Contains(string(profile), "AWS_REGION='"+inst.Region+"'") {
			t.Errorf("boot %d: profile.d is not this instance's:\n%s", i+1, profile)
		}
		rep, _ := statusJSON(t, "--root", root, "--imds-endpoint", endpoint)
		if rep.InstanceID != inst.InstanceID {
			t.Errorf("boot %d: state is for %q, want %q", i+1, rep.InstanceID, inst.InstanceID)
		}
		if now := imageStamps(); len(now) != len(baked) {
			t.Fatal("image files vanished")
		} else {
			for f, b := range baked {
				if now[f] != b {
					t.Errorf("boot %d rewrote image file %s", i+1, f)
				}
			}
		}
	}
	group, _ = os.ReadFile(filepath.Join(root, "etc/group"))
	if !strings.Contains(string(group), "ec2-user") || !strings.Contains(string(group), "\ndocker:x:") {
		t.Errorf("after boot the user should be in group docker:\n%s", group)
	}

	// Drift after bake: repair converges image steps too, and bake --check
	// says what drifted.
	if err := os.Remove(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/docker.service")); err != nil {
		t.Fatal(err)
	}
	drift := ccboot(t, "bake", "--check", "--root", root, "--imds-endpoint", imds)
	if drift.code != 2 || !strings.Contains(drift.stdout, "docker-group differs") {
		t.Fatalf("bake --check after docker was disabled: exit %d, want 2 naming docker-group\n%s%s", drift.code, drift.stdout, drift.stderr)
	}
	endpoint := aemmtest.Start(t, aemmtest.Default())
	if r := ccboot(t, "repair", "--root", root, "--imds-endpoint", endpoint); r.code != 0 || !strings.Contains(r.stdout, "docker-group  changed") {
		t.Fatalf("repair after drift: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// A root that was never baked: bake --check says so and exits 2.
func TestBlackboxBakeCheckUnbaked(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds, asked := countingListener(t)
	r := ccboot(t, "bake", "--check", "--root", root, "--imds-endpoint", imds)
	if r.code != 2 || !strings.Contains(r.stdout, "not baked") {
		t.Fatalf("bake --check on an unbaked root: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if asked.Load() != 0 {
		t.Errorf("bake --check asked IMDS")
	}
	for _, p := range []string{bootstrap.BakeRecordPath, bootstrap.InstalledBinary, "var/log/ccboot.log"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("bake --check wrote %s", p)
		}
	}
}
