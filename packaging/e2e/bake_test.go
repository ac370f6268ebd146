//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// --- 11. baked image ---------------------------------------------------------

// bakedInstance is one launch of the baked image.
type bakedInstance struct {
	name, id, region, account, stack string
	enforced                         bool // the stack's TierMode = enforced
}

// userData is the template's baked-image UserData filled in for this
// instance's stack, as CloudFormation would (no WaitCondition).
func (inst bakedInstance) userData(tmpl string) string {
	tierLine := "# mode: advisory (the default)"
	if inst.enforced {
		tierLine = "mode = enforced"
	}
	return strings.NewReplacer(
		"${WaitHandle}", "",
		"${ReadOnlyRole.Arn}", fmt.Sprintf("arn:aws:iam::%s:role/claudecode-readonly-%s", inst.account, inst.stack),
		"${ElevatedRole.Arn}", fmt.Sprintf("arn:aws:iam::%s:role/claudecode-elevated-%s", inst.account, inst.stack),
		"${ModelLine}", "# model: the default for the Region",
		"${TierLine}", tierLine,
	).Replace(tmpl)
}

// mock writes the metadata mock's config for this instance: its ID in the
// metadata and in the identity document, where ccboot reads it.
func (inst bakedInstance) mock(t *testing.T, s *suite) string {
	return s.mockConfig(t, inst.name, inst.region, inst.account, "claudecode-ec2-"+inst.stack, "aws", func(m map[string]any) {
		m["metadata"].(map[string]any)["values"].(map[string]any)["instance-id"] = inst.id
		m["dynamic"].(map[string]any)["values"].(map[string]any)["instance-identity-document"].(map[string]any)["instanceId"] = inst.id
	})
}

// testBaked bakes the cached Debian rootfs offline with `ccboot bake --root`
// (a network namespace with only loopback: no IMDS to reach; apt from the
// local repository, Claude Code from the loopback release channel), then
// boots the image in nspawn as new instances with other IDs, Regions and
// instance profiles, with the template's own baked-image UserData.
func testBaked(t *testing.T, s *suite) {
	bake := filepath.Join(s.work, "baked")
	bakeOut := s.bakeOffline(t, bake, "overlay", filepath.Join(e2eCacheDir(t, s), "rootfs", "debian"), "", "")
	for _, want := range []string{"packages      changed", "claude-code   changed", "baked: ccboot"} {
		if !strings.Contains(bakeOut, want) {
			t.Errorf("bake output lacks %q:\n%s", want, bakeOut)
		}
	}
	upper := filepath.Join(bake, "upper")
	for _, p := range []string{"var/lib/ccboot/state.json", "var/log/ccboot.log", "run/ccboot", "home/ec2-user/.aws", "etc/profile.d/claude-bedrock.sh"} {
		if _, err := os.Lstat(filepath.Join(upper, p)); err == nil {
			t.Errorf("the baked image holds %s, which belongs to an instance", p)
		}
	}
	if _, err := os.Lstat(filepath.Join(upper, "etc/systemd/system/multi-user.target.wants/ccboot.service")); err != nil {
		t.Errorf("ccboot.service is not enabled in the image: %v", err)
	}
	imageFiles := snapshotHost(t, upper)

	userData := bakedUserData(t, s)
	var walls []float64
	for i, inst := range []bakedInstance{
		{"baked-1", "i-0ba4ed0000000000a", "eu-west-1", "111122223333", "bake1", false},
		{"baked-2", "i-0ba4ed0000000000b", "ap-northeast-1", "444455556666", "bake2", false},
	} {
		dir := filepath.Join(s.work, inst.name)
		state := filepath.Join(dir, "state")
		if err := os.MkdirAll(state, 0o755); err != nil {
			t.Fatal(err)
		}
		// Each launch starts from the image as baked.
		if b, err := exec.Command("cp", "-a", upper, filepath.Join(state, "upper")).CombinedOutput(); err != nil {
			t.Fatalf("copy the baked image: %v\n%s", err, b)
		}
		ud := inst.userData(userData)
		// The test's own unit drop-in (the mock's endpoint; -v so the log
		// lists every command ccboot starts; swap off in nspawn) goes into
		// the instance's disk before boot: systemd has read the unit by the
		// time cloud-init could write it, and a baked boot has no UserData
		// script to reload it. The instance's ccboot settings do come from
		// the template's UserData, as a ccboot.conf drop-in.
		writeFile(t, filepath.Join(state, "upper", "etc/systemd/system/ccboot.service.d/e2e.conf"), dropIn(nspawnEnv, "-v --swap-size off"))
		seed := filepath.Join(dir, "seed")
		s.writeSeed(t, seed, seedOpts{instanceID: inst.id, noUserData: true, cloudConfig: ud})
		mock := inst.mock(t, s)
		o, _ := s.boot(t, inst.name, bootOpts{seed: seed, probe: []string{"baked-boot.sh"}, mockConfig: mock, docker: true,
			state: true, probeEnv: append([]string{"E2E_CLAUDE_VERSION=" + e2eClaudeVersion}, nspawnEnv...)})
		g := bootDir(t, o, 1)
		if st, rc := g.cloudInit(); st != "done" || rc != 0 {
			t.Errorf("%s: cloud-init status %q exit %d, want done", inst.name, st, rc)
		}
		unit := kv(g.file("unit-ccboot.txt"))
		if unit["Result"] != "success" {
			t.Errorf("%s: ccboot.service %v", inst.name, unit)
		}
		startUS, _ := strconv.ParseInt(unit["ExecMainStartTimestampMonotonic"], 10, 64)
		exitUS, _ := strconv.ParseInt(unit["ExecMainExitTimestampMonotonic"], 10, 64)
		wall := float64(exitUS-startUS) / 1e6
		walls = append(walls, wall)
		s.timings.add(fmt.Sprintf("baked boot %d: ccboot.service wall", i+1), time.Duration(wall*float64(time.Second)))
		// For make bench: the wall to the millisecond, and how much of it
		// was the docker-group step waiting for `systemctl start docker`.
		docker := commandsTook(g.file("ccboot.log"), regexp.MustCompile(`^systemctl (\S+ )*start docker\.service$`))
		fmt.Fprintf(os.Stderr, "baked: boot %d: ccboot.service wall %.3f s, systemctl start docker %.3f s\n", i+1, wall, docker.Seconds())
		// IMDS requests during the whole boot, at the mock. AEMM (-I)
		// dumps each request once, as "GenerateToken Received request: &{PUT"
		// or "ValidateToken Received request: &{GET"; its other lines about
		// the same request are not counted.
		aemm, _ := os.ReadFile(filepath.Join(o, "host", "aemm.log"))
		imds := strings.Count(string(aemm), "Received request: &{")
		fmt.Fprintf(os.Stderr, "imds: baked boot %d: %d requests at the mock\n", i+1, imds)
		if imds == 0 || imds > 5 {
			t.Errorf("%s: %d IMDS requests at boot, want the instance steps' few (token, identity document, partition, iam/info)", inst.name, imds)
		}
		if l := g.file("ccboot.log"); !strings.Contains(l, `"instance_id":"`+inst.id+`"`) {
			t.Errorf("%s: ccboot's run was not instance %s's:\n%s", inst.name, inst.id, tail(l, 5))
		}
		// Image steps in sync, instance steps applied.
		res := g.report("state-boot.json").results()
		for step, want := range map[string]string{"packages": "ok", "claude-code": "ok", "profile-env": "changed", "aws-config": "changed", "aliases": "changed"} {
			if res[step] != want {
				t.Errorf("%s: step %s %q, want %s (state: %s)", inst.name, step, res[step], want, g.file("state-boot.json"))
			}
		}
		// No package manager, npm or download ran.
		for _, c := range startedCommands(g.file("ccboot.log")) {
			if regexp.MustCompile(`^(chroot \S+ )?(apt|apt-get|dpkg|dnf|rpm|npm|curl|wget)\b`).MatchString(c) {
				t.Errorf("%s: ccboot ran %q at boot of a baked image", inst.name, c)
			}
		}
		// No image file was written.
		for _, line := range strings.Split(strings.TrimSpace(g.file("image-files.txt")), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[1] == "missing" {
				t.Errorf("%s: image file %s", inst.name, line)
				continue
			}
			if want, ok := imageFiles[f[0]]; !ok || len(f) < 6 || want != f[2]+" "+f[5] {
				t.Errorf("%s: image file %s changed at boot: %q, baked %q", inst.name, f[0], line, want)
			}
		}
		// The instance's own files.
		if p := g.file("profile.sh"); !strings.Contains(p, "AWS_REGION='"+inst.region+"'") {
			t.Errorf("%s: profile.d is not this instance's:\n%s", inst.name, p)
		}
		if a := g.file("aws-config"); !strings.Contains(a, "region = "+inst.region) || !strings.Contains(a, ":role/claudecode-readonly-"+inst.stack) {
			t.Errorf("%s: ~/.aws/config is not this instance's:\n%s", inst.name, a)
		}
		if !strings.Contains(g.file("ec2-user-groups.txt"), "docker") {
			t.Errorf("%s: ec2-user not in group docker: %s", inst.name, g.file("ec2-user-groups.txt"))
		}
		if rc := g.rc("claude-version"); rc != 0 || !strings.Contains(g.file("claude-version.out"), "(Claude Code)") {
			t.Errorf("%s: claude --version as ec2-user: exit %d: %s", inst.name, rc, g.out("claude-version"))
		}
		if rc := g.rc("claude-ro"); rc != 0 || !strings.Contains(g.file("claude-ro.out"), "claudecode-readonly") {
			t.Errorf("%s: claude-ro alias: %s", inst.name, g.out("claude-ro"))
		}
		if rc := g.rc("bake-check"); rc != 0 {
			t.Errorf("%s: bake --check on the booted instance: exit %d: %s", inst.name, rc, g.out("bake-check"))
		}
	}
	t.Logf("baked boots: ccboot.service wall %v s", walls)
}

// --- 11b. baked image under QEMU: swap and reboot -----------------------------

// testBakedQEMU bakes a copy of the cache's QEMU Debian disk offline (loop
// mount; the cache stays read-only), boots it under QEMU as a new instance
// with the template's baked-image UserData, and reboots it once: swap,
// which a container cannot have, is made at first boot and is back after
// the reboot (swap-reboot.sh, as scenario 3), and neither boot starts a
// package manager or download.
func testBakedQEMU(t *testing.T, s *suite) {
	if os.Getenv("CCBOOT_E2E_QEMU") == "0" {
		t.Skip("CCBOOT_E2E_QEMU=0")
	}
	dir := filepath.Join(s.work, "baked-qemu")
	img := s.copyQEMUDisk(t, dir)
	// -v: the log lists every command ccboot starts. The drop-in goes into
	// the image: a baked boot has no UserData script to reload units.
	const flags = "-v"
	add := filepath.Join(dir, "add")
	writeFile(t, filepath.Join(add, "etc/systemd/system/ccboot.service.d/e2e.conf"), dropIn(nil, flags))
	bakeOut := s.bakeOffline(t, filepath.Join(dir, "bake"), "image", img, add, "")
	if !strings.Contains(bakeOut, "baked: ccboot") {
		t.Errorf("bake output:\n%s", bakeOut)
	}

	inst := bakedInstance{"baked-qemu", "i-0ba4ed00000000e5c", "eu-central-1", "777788889999", "bakeq", false}
	seed := filepath.Join(dir, "seed")
	s.writeSeed(t, seed, seedOpts{instanceID: inst.id, noUserData: true, cloudConfig: inst.userData(bakedUserData(t, s))})
	out, _ := s.boot(t, inst.name, bootOpts{
		qemu: true, image: img, seed: seed, probe: []string{"baked-qemu.sh", "swap-reboot.sh"},
		mockConfig: inst.mock(t, s), probeEnv: []string{"E2E_CCBOOT_FLAGS=" + flags}, timeout: 15 * time.Minute,
	})
	b1, b2 := checkSwapReboot(t, out)
	for _, g := range []guest{b1, b2} {
		boot := filepath.Base(g.dir)
		unit := kv(g.file("unit-ccboot.txt"))
		if unit["Result"] != "success" || unit["ExecMainStatus"] != "0" {
			t.Errorf("%s: ccboot.service %v", boot, unit)
		}
		startUS, _ := strconv.ParseInt(unit["ExecMainStartTimestampMonotonic"], 10, 64)
		exitUS, _ := strconv.ParseInt(unit["ExecMainExitTimestampMonotonic"], 10, 64)
		t.Logf("%s: ccboot.service wall %.2f s (TCG: not a benchmark)", boot, float64(exitUS-startUS)/1e6)
		// Starting docker is an instance step; the package is the image's.
		if got := strings.TrimSpace(g.file("docker-active.txt")); got != "active" {
			t.Errorf("%s: docker.service %q, want active", boot, got)
		}
		if rc := g.rc("bake-check"); rc != 0 {
			t.Errorf("%s: bake --check: exit %d: %s", boot, rc, g.out("bake-check"))
		}
		// The log holds every run on this disk so far (boot 1's run and
		// repair, then boot 2's run).
		cmds := startedCommands(g.file("ccboot.log"))
		if len(cmds) == 0 {
			t.Errorf("%s: ccboot's -v log lists no commands; is the e2e drop-in in effect?", boot)
		}
		for _, c := range cmds {
			if regexp.MustCompile(`^(chroot \S+ )?(apt|apt-get|dpkg|dnf|rpm|npm|curl|wget)\b`).MatchString(c) {
				t.Errorf("%s: ccboot ran %q on the baked image", boot, c)
			}
		}
	}
	// Boot 1: image steps in sync, instance steps applied, swap among them.
	res := b1.report("state-boot.json").results()
	for step, want := range map[string]string{"packages": "ok", "claude-code": "ok", "swap": "changed", "profile-env": "changed", "aws-config": "changed", "aliases": "changed"} {
		if res[step] != want {
			t.Errorf("boot 1: step %s %q, want %s (state: %s)", step, res[step], want, b1.file("state-boot.json"))
		}
	}
	if l := b1.file("ccboot.log"); !strings.Contains(l, `"instance_id":"`+inst.id+`"`) {
		t.Errorf("boot 1: ccboot's run was not instance %s's:\n%s", inst.id, tail(l, 5))
	}
	if a := b1.file("aws-config"); !strings.Contains(a, "region = "+inst.region) {
		t.Errorf("~/.aws/config is not this instance's:\n%s", a)
	}
	aemm, _ := os.ReadFile(filepath.Join(out, "host", "aemm.log"))
	t.Logf("IMDS requests at the mock over both boots: %d", strings.Count(string(aemm), "Received request: &{"))
}

// copyQEMUDisk copies the cache's QEMU Debian disk to DIR/root.ext4 (the
// cache stays read-only) and returns its path.
func (s *suite) copyQEMUDisk(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "root.ext4")
	start := time.Now()
	// 6 GB, mostly holes: a sparse copy (or a reflink where the file
	// system has them) takes seconds.
	if b, err := exec.Command("cp", "--sparse=always", "--reflink=auto",
		filepath.Join(e2eCacheDir(t, s), "qemu", "debian.ext4"), img).CombinedOutput(); err != nil {
		t.Fatalf("copy the cached QEMU disk: %v\n%s", err, b)
	}
	s.timings.add("copy the QEMU disk", time.Since(start))
	return img
}

// e2eCacheDir is the e2e cache of this recipe (cache.sh --path).
func e2eCacheDir(t *testing.T, s *suite) string {
	t.Helper()
	cache, err := exec.Command(filepath.Join(s.e2eDir, "cache.sh"), "--path").Output()
	if err != nil {
		t.Fatalf("cache.sh --path: %v", err)
	}
	return strings.TrimSpace(string(cache))
}

// bakeOffline runs `ccboot bake --root` on an image in a network namespace
// with only loopback (no IMDS to reach; apt from the cache's local
// repository, Claude Code from the loopback release channel), then `bake
// --check`, and returns the bake's output. kind "overlay": src is a rootfs
// directory, left as it is; the image is DIR/upper, an overlay's upper
// layer. kind "image": src is a raw ext4 disk, loop-mounted and baked in
// place. add, if not empty, is a directory copied over the image after the
// bake (a test's own files, such as a unit drop-in). conf is more of the
// image's ccboot.conf (e.g. a [tiers] section), "" for none.
func (s *suite) bakeOffline(t *testing.T, dir, kind, src, add, conf string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// What the image's ccboot.conf holds (Packer's ccboot_config).
	// The key the channel's manifests are signed with goes into the image
	// beside it, as a private mirror's would.
	imageConf := "[claude-code]\nrelease_url = " + releaseURL + "\nsigning_key = /etc/ccboot/" + releaseKeyFile + "\n" + conf
	script := `set -eu
b=$1 kind=$2 src=$3 repo=$4 dist=$5 port=$6 conf=$7 add=$8
mkdir -p "$b/merged"
if [ "$kind" = image ]; then
	mount -o loop "$src" "$b/merged"
else
	mkdir -p "$b/upper" "$b/work"
	mount -t overlay overlay -o "lowerdir=$src,upperdir=$b/upper,workdir=$b/work" "$b/merged"
fi
mount --bind "$repo" "$b/merged/srv/repo"
ip link set lo up
python3 -m http.server --bind 127.0.0.1 --directory "$dist" "$port" >"$b/http.log" 2>&1 &
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
mkdir -p "$b/merged/etc/ccboot"
printf '%s' "$conf" >"$b/merged/etc/ccboot/ccboot.conf"
install -m 0644 "$dist/release-key.asc" "$b/merged/etc/ccboot/release-key.asc"
rc=0
"$dist/ccboot" bake --root "$b/merged" >"$b/bake.out" 2>&1 || rc=$?
"$dist/ccboot" bake --check --root "$b/merged" >"$b/check.out" 2>&1 || echo "check exit $?" >>"$b/check.out"
# Existing directories keep their owner and mode.
if [ -n "$add" ]; then tar -C "$add" -cf - . | tar -C "$b/merged" -xf - --no-overwrite-dir; fi
kill %1 2>/dev/null || true
umount "$b/merged/srv/repo"
umount "$b/merged"
exit $rc`
	start := time.Now()
	cmd := exec.Command("unshare", "--mount", "--net", "--fork", "bash", "-c", script, "bake",
		dir, kind, src, filepath.Join(e2eCacheDir(t, s), "srv", "repo"), s.dist, strconv.Itoa(distPort), imageConf, add)
	out, err := cmd.CombinedOutput()
	bakeOut, _ := os.ReadFile(filepath.Join(dir, "bake.out"))
	checkOut, _ := os.ReadFile(filepath.Join(dir, "check.out"))
	s.timings.add("bake (offline, --root, "+kind+")", time.Since(start))
	if err != nil {
		t.Fatalf("ccboot bake --root: %v\n%s\n%s", err, out, bakeOut)
	}
	if !strings.Contains(string(checkOut), "image is baked and in sync") || !strings.Contains(string(checkOut), e2eClaudeVersion) {
		t.Errorf("bake --check on the baked image:\n%s", checkOut)
	}
	return string(bakeOut)
}

// bakedUserData is the CloudFormation template's UserData for BakedAmiId,
// the first element of its Fn::Sub, as written in the template.
func bakedUserData(t *testing.T, s *suite) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.repo, "packaging", "cloudformation", "ccboot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	get := func(n *yaml.Node, key string) *yaml.Node {
		for i := 0; n != nil && i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
		return nil
	}
	ud := get(get(get(get(doc.Content[0], "Resources"), "Instance"), "Properties"), "UserData")
	if ud == nil || ud.Tag != "!If" || len(ud.Content) != 3 {
		t.Fatal("template: Instance UserData is not !If [BakedImage, ...]")
	}
	sub := get(get(ud.Content[1], "Fn::Base64"), "Fn::Sub")
	if sub == nil || len(sub.Content) != 2 {
		t.Fatal("template: the baked UserData is not Fn::Base64 of Fn::Sub [text, vars]")
	}
	return sub.Content[0].Value
}

// snapshotHost maps each image file the probe snapshots to "mtime sha16",
// read from the baked image's upper layer.
func snapshotHost(t *testing.T, upper string) map[string]string {
	t.Helper()
	files := []string{"/usr/local/bin/ccboot", "/etc/systemd/system/ccboot.service", "/etc/ccboot/baked.json",
		"/etc/ccboot/ccboot.conf", "/var/lib/dpkg/status", "/usr/local/bin/claude",
		"/usr/local/lib/claude-code/versions/" + e2eClaudeVersion + "/claude",
		"/usr/local/lib/claude-code/versions/" + e2eClaudeVersion + "/install.json"}
	m := map[string]string{}
	for _, f := range files {
		p := filepath.Join(upper, f)
		out, err := exec.Command("bash", "-c", `printf '%s %s' "$(stat -c '%.9Y' "$1")" "$(sha256sum <"$1" | cut -c1-16)"`, "snap", p).Output()
		if err != nil {
			t.Fatalf("stat %s in the baked image: %v", f, err)
		}
		m[f] = string(out)
	}
	return m
}

// commandsTook adds up how long the commands in ccboot's -v log that match
// re took ("took" is in seconds).
func commandsTook(log string, re *regexp.Regexp) time.Duration {
	var d time.Duration
	for _, line := range strings.Split(log, "\n") {
		var e struct {
			Msg  string  `json:"msg"`
			Cmd  string  `json:"cmd"`
			Took float64 `json:"took"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "command" && re.MatchString(e.Cmd) {
			d += time.Duration(e.Took * float64(time.Second))
		}
	}
	return d
}

// startedCommands lists the commands in ccboot's -v log ("command" lines).
func startedCommands(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		var e struct {
			Msg string `json:"msg"`
			Cmd string `json:"cmd"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "command" {
			out = append(out, e.Cmd)
		}
	}
	return out
}
