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
}

// testBaked bakes the cached Debian rootfs offline with `ccboot bake --root`
// (a network namespace with only loopback: no IMDS to reach; apt from the
// local repository, Claude Code from the loopback release channel), then
// boots the image in nspawn as new instances with other IDs, Regions and
// instance profiles, with the template's own baked-image UserData.
func testBaked(t *testing.T, s *suite) {
	cache, err := exec.Command(filepath.Join(s.e2eDir, "cache.sh"), "--path").Output()
	if err != nil {
		t.Fatalf("cache.sh --path: %v", err)
	}
	cacheDir := strings.TrimSpace(string(cache))
	bake := filepath.Join(s.work, "baked")
	if err := os.MkdirAll(bake, 0o755); err != nil {
		t.Fatal(err)
	}
	// What the image's ccboot.conf holds (Packer's ccboot_config).
	imageConf := "[claude-code]\nrelease_url = " + releaseURL + "\n"
	script := `set -eu
b=$1 rootfs=$2 repo=$3 dist=$4 port=$5 conf=$6
mkdir -p "$b/upper" "$b/work" "$b/merged"
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$b/upper,workdir=$b/work" "$b/merged"
mount --bind "$repo" "$b/merged/srv/repo"
ip link set lo up
python3 -m http.server --bind 127.0.0.1 --directory "$dist" "$port" >"$b/http.log" 2>&1 &
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
mkdir -p "$b/merged/etc/ccboot"
printf '%s' "$conf" >"$b/merged/etc/ccboot/ccboot.conf"
rc=0
"$dist/ccboot" bake --root "$b/merged" >"$b/bake.out" 2>&1 || rc=$?
"$dist/ccboot" bake --check --root "$b/merged" >"$b/check.out" 2>&1 || echo "check exit $?" >>"$b/check.out"
kill %1 2>/dev/null || true
umount "$b/merged/srv/repo"
umount "$b/merged"
exit $rc`
	start := time.Now()
	cmd := exec.Command("unshare", "--mount", "--net", "--fork", "bash", "-c", script, "bake",
		bake, filepath.Join(cacheDir, "rootfs", "debian"), filepath.Join(cacheDir, "srv", "repo"), s.dist, strconv.Itoa(distPort), imageConf)
	out, err := cmd.CombinedOutput()
	bakeOut, _ := os.ReadFile(filepath.Join(bake, "bake.out"))
	checkOut, _ := os.ReadFile(filepath.Join(bake, "check.out"))
	s.timings.add("bake (offline, --root)", time.Since(start))
	if err != nil {
		t.Fatalf("ccboot bake --root: %v\n%s\n%s", err, out, bakeOut)
	}
	for _, want := range []string{"packages      changed", "claude-code   changed", "baked: ccboot"} {
		if !strings.Contains(string(bakeOut), want) {
			t.Errorf("bake output lacks %q:\n%s", want, bakeOut)
		}
	}
	if !strings.Contains(string(checkOut), "image is baked and in sync") || !strings.Contains(string(checkOut), e2eClaudeVersion) {
		t.Errorf("bake --check on the baked image:\n%s", checkOut)
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
		{"baked-1", "i-0ba4ed0000000000a", "eu-west-1", "111122223333", "bake1"},
		{"baked-2", "i-0ba4ed0000000000b", "ap-northeast-1", "444455556666", "bake2"},
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
		ud := strings.NewReplacer(
			"${WaitHandle}", "",
			"${ReadOnlyRole.Arn}", fmt.Sprintf("arn:aws:iam::%s:role/claudecode-readonly-%s", inst.account, inst.stack),
			"${ElevatedRole.Arn}", fmt.Sprintf("arn:aws:iam::%s:role/claudecode-elevated-%s", inst.account, inst.stack),
			"${ModelLine}", "# model: the default for the Region",
		).Replace(userData)
		// The test's own unit drop-in (the mock's endpoint; -v so the log
		// lists every command ccboot starts; swap off in nspawn) goes into
		// the instance's disk before boot: systemd has read the unit by the
		// time cloud-init could write it, and a baked boot has no UserData
		// script to reload it. The instance's ccboot settings do come from
		// the template's UserData, as a ccboot.conf drop-in.
		writeFile(t, filepath.Join(state, "upper", "etc/systemd/system/ccboot.service.d/e2e.conf"), dropIn(nspawnEnv, "-v --swap-size off"))
		seed := filepath.Join(dir, "seed")
		s.writeSeed(t, seed, seedOpts{instanceID: inst.id, noUserData: true, cloudConfig: ud})
		mock := s.mockConfig(t, inst.name, inst.region, inst.account, "claudecode-ec2-"+inst.stack, "aws", func(m map[string]any) {
			m["metadata"].(map[string]any)["values"].(map[string]any)["instance-id"] = inst.id
		})
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
