//go:build e2e

// Package e2e boots real guests (systemd as PID 1, real cloud-init, real
// apt/dnf) with the shipped UserData pointed at this build, and checks from
// inside the guest what ccboot left behind. Run it with `make e2e` (root;
// packaging/e2e/deps.sh and cache.sh first). Each scenario is a subtest of
// TestE2E; -run 'TestE2E/swap' picks some.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccboot/ccboot/steps/claudetest"
)

// The mock's identity for the main boot: a partition other than "aws", so a
// hard-coded partition or account in the rendered files cannot pass.
const (
	mainRegion    = "cn-northwest-1"
	mainAccount   = "210987654321"
	mainProfile   = "claudecode-ec2-e2etest"
	mainPartition = "aws-cn"
	mainModel     = "anthropic.claude-e2e-model-v1" // no geographic prefix: mainRegion is in China
)

// nspawnFlags: swapon is EPERM in a container, so nspawn guests run with
// swap off; swap is proven in the QEMU scenario. Claude Code comes from the
// release channel the harness serves from /srv/dist on the guest's loopback,
// its manifests checked against the harness's signing key.
var nspawnFlags = "--swap-size off --set claude-code.release_url=" + releaseURL + " --set claude-code.signing_key=/srv/dist/" + releaseKeyFile

func TestE2E(t *testing.T) {
	s := newSuite(t)
	t0 := time.Now()
	defer func() {
		s.timings.add("total", time.Since(t0))
		t.Log("per-scenario timings:\n" + strings.Join(s.timings.lines, "\n"))
		fmt.Fprintln(os.Stderr, strings.Join(s.timings.lines, "\n"))
	}()
	var main struct {
		once sync.Once
		out  string
		rc   int
	}
	mainBoot := func(t *testing.T) guest {
		t.Helper()
		main.once.Do(func() {
			seed := filepath.Join(s.work, "first-boot", "seed")
			s.writeSeed(t, seed, seedOpts{model: mainModel, dropIn: dropIn(nspawnEnv, nspawnFlags)})
			mock := s.mockConfig(t, "first-boot", mainRegion, mainAccount, mainProfile, mainPartition, nil)
			main.out, main.rc = s.boot(t, "first-boot", bootOpts{
				seed: seed, probe: []string{"first-boot.sh"}, mockConfig: mock, docker: true,
				probeEnv: append([]string{"E2E_CCBOOT_FLAGS=" + nspawnFlags}, nspawnEnv...),
			})
		})
		if main.out == "" {
			t.Fatal("the main boot did not run (see the first subtest's failure)")
		}
		return bootDir(t, main.out, 1)
	}
	scenario := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			defer func() { s.timings.add(name, time.Since(start)) }()
			f(t)
		})
	}

	scenario("1_first_boot", func(t *testing.T) { testFirstBoot(t, mainBoot(t)) })
	scenario("4_idempotence", func(t *testing.T) { testIdempotence(t, mainBoot(t)) })
	scenario("5_drift_repair", func(t *testing.T) { testDrift(t, mainBoot(t)) })
	scenario("10_claude_upgrade_corrupt_migrate", func(t *testing.T) { testClaudeVersions(t, mainBoot(t)) })
	scenario("2_dnf_guest", func(t *testing.T) { testDnf(t, s) })
	scenario("6_failure_visible", func(t *testing.T) { testNoProfile(t, s) })
	scenario("7_checksum_refusal", func(t *testing.T) { testBadChecksum(t, s) })
	scenario("8_interrupted", func(t *testing.T) { testInterrupted(t, s) })
	scenario("9_arm64_plan", func(t *testing.T) { testArm64(t, s) })
	scenario("11_baked_image", func(t *testing.T) { testBaked(t, s) })
	scenario("12_claude_code_bedrock", func(t *testing.T) { testClaudeBedrock(t, s) })
	scenario("13_enforced_tiers", func(t *testing.T) { testEnforcedTiers(t, s) })
	scenario("14_distributor_upgrade", func(t *testing.T) { testDistributor(t, s) })
	scenario("13q_enforced_qemu_reboot", func(t *testing.T) { testEnforcedQEMU(t, s) })
	scenario("3_qemu_swap_reboot", func(t *testing.T) { testSwapReboot(t, s) })
	scenario("11b_baked_qemu_swap_reboot", func(t *testing.T) { testBakedQEMU(t, s) })
}

// --- 1. first boot -------------------------------------------------------

func testFirstBoot(t *testing.T, g guest) {
	// cloud-init reports done, and only after ccboot's run finished.
	if st, rc := g.cloudInit(); st != "done" || rc != 0 {
		t.Errorf("cloud-init status --wait: status %q exit %d, want done/0\n%s", st, rc, g.file("cloud-init-status.txt"))
	}
	unit := kv(g.file("unit-ccboot.txt"))
	final := kv(g.file("unit-cloud-final.txt"))
	ccDone, _ := strconv.ParseInt(unit["ExecMainExitTimestampMonotonic"], 10, 64)
	finalDone, _ := strconv.ParseInt(final["ActiveEnterTimestampMonotonic"], 10, 64)
	if ccDone == 0 || finalDone == 0 || ccDone > finalDone {
		t.Errorf("ccboot.service finished at %d µs, cloud-final.service (whose end `cloud-init status --wait` waits for) at %d µs: cloud-init must not be done before ccboot", ccDone, finalDone)
	}
	if unit["Result"] != "success" || unit["ExecMainStatus"] != "0" {
		t.Errorf("ccboot.service: %v", unit)
	}
	if got := strings.TrimSpace(g.file("is-active.txt")); got != "active" {
		t.Errorf("systemctl is-active ccboot = %q, want active", got)
	}
	if st := g.file("systemctl-status.txt"); !regexp.MustCompile(`(?m)^\s*Status: "done: [0-9]+ changed, [0-9]+ ok`).MatchString(st) {
		t.Errorf("systemctl status ccboot does not show the final STATUS line:\n%s", st)
	}

	// ccboot status --format json: every step ok.
	if rc := g.rc("status-json"); rc != 0 {
		t.Errorf("ccboot status --format json exited %d: %s", rc, g.out("status-json"))
	}
	r := g.report("status-json.out")
	want := []string{"packages", "imds-filter", "claude-code", "docker-group", "user-privileges", "rootless-docker", "swap", "profile-env", "claude-settings", "credential-broker", "aws-config", "aliases"}
	res := r.results()
	for _, name := range want {
		if res[name] != "ok" && res[name] != "changed" {
			t.Errorf("step %s: %q, want ok/changed (status: %s)", name, res[name], g.file("status-json.out"))
		}
	}
	if !r.Complete || len(r.Steps) != len(want) {
		t.Errorf("status: complete=%v with %d steps, want complete with %d", r.Complete, len(r.Steps), len(want))
	}

	// Packages from the local apt repository.
	dpkg := g.file("dpkg.txt")
	for _, p := range []string{"unzip", "git", "jq", "nodejs", "docker.io"} {
		if !strings.Contains(dpkg, p+" install ok installed") {
			t.Errorf("package %s not installed:\n%s", p, dpkg)
		}
	}
	// Claude Code runs as the target user.
	if rc := g.rc("claude-version"); rc != 0 || !strings.Contains(g.file("claude-version.out"), "(Claude Code)") {
		t.Errorf("claude --version as ec2-user: exit %d: %s", rc, g.out("claude-version"))
	}
	// Natively: PREFIX/bin/claude links to the verified executable, it is
	// the only claude on the user's PATH, and there is no npm copy.
	if got := strings.TrimSpace(g.file("claude-link.txt")); got != "../lib/claude-code/versions/"+e2eClaudeVersion+"/claude" {
		t.Errorf("/usr/local/bin/claude -> %q, want the native %s", got, e2eClaudeVersion)
	}
	if got := strings.Fields(g.file("claude-on-path.txt")); len(got) != 1 || got[0] != "/usr/local/bin/claude" {
		t.Errorf("claude on ec2-user's PATH: %q, want exactly /usr/local/bin/claude", got)
	}
	if got := g.file("npm-copy.txt"); !strings.Contains(got, "No such file") {
		t.Errorf("an npm copy of Claude Code exists: %s", got)
	}
	if groups := strings.Fields(g.file("ec2-user-groups.txt")); !contains(groups, "docker") {
		t.Errorf("ec2-user groups %v: no docker", groups)
	}
	if got := strings.TrimSpace(g.file("docker-enabled.txt")); got != "enabled" {
		t.Errorf("docker.service is-enabled = %q", got)
	}
	if got := strings.TrimSpace(g.file("docker-active.txt")); got != "active" {
		t.Errorf("docker.service is-active = %q", got)
	}

	// Rendered files carry the mock's values and the configured model.
	profile := g.file("profile.sh")
	for _, want := range []string{"export CLAUDE_CODE_USE_BEDROCK='1'\n", "export AWS_REGION='" + mainRegion + "'\n", "export ANTHROPIC_MODEL='" + mainModel + "'\n"} {
		if !strings.Contains(profile, want) {
			t.Errorf("profile.d lacks %q:\n%s", want, profile)
		}
	}
	stack := strings.TrimPrefix(mainProfile, "claudecode-ec2-")
	aws := g.file("aws-config")
	for _, want := range []string{
		"[profile claudecode-readonly]", "[profile claudecode-elevated]",
		fmt.Sprintf("arn:%s:iam::%s:role/claudecode-readonly-%s", mainPartition, mainAccount, stack),
		fmt.Sprintf("arn:%s:iam::%s:role/claudecode-elevated-%s", mainPartition, mainAccount, stack),
		"credential_source = Ec2InstanceMetadata", mainRegion,
	} {
		if !strings.Contains(aws, want) {
			t.Errorf("~/.aws/config lacks %q:\n%s", want, aws)
		}
	}
	bashrc := g.file("bashrc")
	if n := len(lines(bashrc, "# >>> ccboot aliases >>>")); n != 1 {
		t.Errorf("~/.bashrc has %d alias blocks, want 1:\n%s", n, bashrc)
	}
	aliases := g.file("aliases.out")
	for _, want := range []string{"alias claude-ro=", "AWS_PROFILE=claudecode-readonly claude", "alias claude-el=", "AWS_PROFILE=claudecode-elevated claude"} {
		if !strings.Contains(aliases, want) {
			t.Errorf("an interactive shell of ec2-user lacks %q in `alias`:\n%s", want, aliases)
		}
	}
	modes := g.file("modes.txt")
	for _, want := range []string{
		"/etc/profile.d/claude-bedrock.sh 644 root:root",
		"/home/ec2-user/.aws 700 ec2-user:ec2-user",
		"/home/ec2-user/.aws/config 600 ec2-user:ec2-user",
		"/home/ec2-user/.bashrc 644 ec2-user:ec2-user",
		"/usr/local/bin/ccboot 755 root:root",
		"/etc/ccboot/ccboot.conf 644 root:root",
	} {
		if !strings.Contains(modes, want+"\n") {
			t.Errorf("mode/owner: want %q in\n%s", want, modes)
		}
	}
	if tmp := strings.TrimSpace(g.file("temp-files-boot.txt")); tmp != "" {
		t.Errorf("temp files left after the first boot:\n%s", tmp)
	}

	// The unit's run left the Custom:ccboot inventory where the SSM agent
	// collects it, agreeing with status; status names the file.
	inv := checkInventory(t, g, "boot", "status-json.out", "ok")
	if inv["ClaudeCodeVersion"] != e2eClaudeVersion || inv["LastRunMode"] != "run" || inv["TierMode"] != "advisory" {
		t.Errorf("inventory after the first boot: %v", inv)
	}
	if !strings.Contains(g.file("status-text.out"), "\ninventory: /var/lib/amazon/ssm/") {
		t.Errorf("status text does not say where the inventory is:\n%s", g.file("status-text.out"))
	}
}

// --- 4. idempotence ------------------------------------------------------

func testIdempotence(t *testing.T, g guest) {
	if rc := g.rc("repair-noop"); rc != 0 {
		t.Fatalf("ccboot repair after bootstrap exited %d: %s", rc, g.out("repair-noop"))
	}
	r := g.report("state-noop.json")
	if r.Mode != "repair" {
		t.Errorf("state after repair: mode %q, want repair", r.Mode)
	}
	if n := r.changes(); n != 0 {
		t.Errorf("repair right after bootstrap made %d changes: %s", n, g.out("repair-noop"))
	}
	for name, res := range r.results() {
		if res != "ok" {
			t.Errorf("repair: step %s %s, want ok", name, res)
		}
	}
	before, after := g.file("files-before.txt"), g.file("files-after.txt")
	if before == "" || before != after {
		t.Errorf("a no-op repair changed a managed file (inode mtime mode owner sha):\nbefore:\n%safter:\n%s", before, after)
	}
	if strings.Contains(before, "missing") {
		t.Errorf("a managed file is missing after bootstrap:\n%s", before)
	}
	t.Logf("no-op repair took %d ms", g.ms("repair-noop"))
	fmt.Fprintf(os.Stderr, "timing: %-34s %7.3fs\n", "no-op repair (in guest)", float64(g.ms("repair-noop"))/1000)
}

// --- 5. drift repair -----------------------------------------------------

func testDrift(t *testing.T, g guest) {
	// Four things broken at once: profile.d gone, user out of docker, a role
	// ARN edited, the alias block edited.
	if rc := g.rc("drift-check"); rc != 2 {
		t.Errorf("status --check after drift exited %d, want 2: %s", rc, g.out("drift-check"))
	}
	check := g.file("drift-check.out")
	for _, step := range []string{"profile-env", "docker-group", "aws-config", "aliases"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(step) + `\s+drift\b`).MatchString(check) {
			t.Errorf("status --check does not name %s as drift:\n%s", step, check)
		}
	}
	for _, step := range []string{"packages", "claude-code", "swap"} {
		if regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(step) + `\s+drift\b`).MatchString(check) {
			t.Errorf("status --check names %s, which was not touched:\n%s", step, check)
		}
	}
	if rc := g.rc("drift-repair"); rc != 0 {
		t.Errorf("repair after drift exited %d: %s", rc, g.out("drift-repair"))
	}
	if rc := g.rc("drift-recheck"); rc != 0 {
		t.Errorf("status --check after repair exited %d, want 0: %s", rc, g.out("drift-recheck"))
	}
	if g.file("profile-repaired.sh") != g.file("profile.sh") {
		t.Errorf("profile.d after repair differs from the first boot's")
	}
	if g.file("aws-config-repaired") != g.file("aws-config") {
		t.Errorf("~/.aws/config after repair differs from the first boot's:\n%s", g.file("aws-config-repaired"))
	}
	if g.file("bashrc-repaired") != g.file("bashrc") {
		t.Errorf("~/.bashrc after repair differs from the first boot's:\n%s", g.file("bashrc-repaired"))
	}
	if groups := strings.Fields(g.file("ec2-user-groups-repaired.txt")); !contains(groups, "docker") {
		t.Errorf("ec2-user not back in docker: %v", groups)
	}

	// The model line changed by hand.
	if !strings.Contains(g.file("profile-tampered.sh"), "tampered.model") {
		t.Fatalf("the probe did not manage to change the model line:\n%s", g.file("profile-tampered.sh"))
	}
	if rc := g.rc("model-check"); rc != 2 || !regexp.MustCompile(`(?m)^profile-env\s+drift\b`).MatchString(g.file("model-check.out")) {
		t.Errorf("status --check after changing the model line: exit %d, want 2 naming profile-env:\n%s", rc, g.out("model-check"))
	}
	if rc := g.rc("model-recheck"); rc != 0 || g.rc("model-repair") != 0 {
		t.Errorf("repair/check after the model change: %d/%d:\n%s\n%s", g.rc("model-repair"), rc, g.out("model-repair"), g.out("model-recheck"))
	}
	if got := g.file("profile-model-repaired.sh"); got != g.file("profile.sh") {
		t.Errorf("profile.d not restored after the model change:\n%s", got)
	}
	if tmp := strings.TrimSpace(g.file("temp-files-end.txt")); tmp != "" {
		t.Errorf("temp files left:\n%s", tmp)
	}
}

// --- 10. Claude Code versions ----------------------------------------------

func testClaudeVersions(t *testing.T, g guest) {
	link := func(v string) string { return "../lib/claude-code/versions/" + v + "/claude" }
	if rc := g.rc("claude-upgrade"); rc != 0 || strings.TrimSpace(g.file("claude-link-upgraded.txt")) != link(e2eClaudeUpgrade) {
		t.Errorf("upgrade to %s: exit %d, link %q:\n%s", e2eClaudeUpgrade, rc, g.file("claude-link-upgraded.txt"), g.out("claude-upgrade"))
	}
	corrupt := g.file("claude-corrupt.out")
	if rc := g.rc("claude-corrupt"); rc != 1 || !strings.Contains(corrupt, "checksum mismatch") || !strings.Contains(corrupt, e2eClaudeBad+"/linux-x64/claude") {
		t.Errorf("corrupted %s: exit %d, want 1 with a checksum mismatch naming the URL:\n%s", e2eClaudeBad, rc, g.out("claude-corrupt"))
	}
	if got := strings.TrimSpace(g.file("claude-link-corrupt.txt")); got != link(e2eClaudeUpgrade) {
		t.Errorf("after the failed upgrade the link is %q, want the previous %s", got, link(e2eClaudeUpgrade))
	}
	// The failed repair shows in the inventory: its step by name, and the
	// version still installed.
	if inv := checkInventory(t, g, "corrupt", "status-corrupt-json.out", "failed"); inv["FailedSteps"] != "claude-code" || inv["LastRunMode"] != "repair" || inv["ClaudeCodeVersion"] != e2eClaudeUpgrade {
		t.Errorf("inventory after the failed repair: %v", inv)
	}
	badSig := g.file("claude-badsig.out")
	for _, w := range []string{"by another key", "expected key " + claudetest.NewSigner("e2e").Fingerprint(), "signer " + claudetest.NewSigner("e2e-other").Fingerprint(), e2eClaudeBadSig + "/manifest.json.sig", "nothing was installed"} {
		if g.rc("claude-badsig") != 1 || !strings.Contains(badSig, w) {
			t.Errorf("%s signed by another key: exit %d, want 1 with %q:\n%s", e2eClaudeBadSig, g.rc("claude-badsig"), w, g.out("claude-badsig"))
		}
	}
	if got := strings.TrimSpace(g.file("claude-link-badsig.txt")); got != link(e2eClaudeUpgrade) {
		t.Errorf("after the refused signature the link is %q, want the previous %s", got, link(e2eClaudeUpgrade))
	}
	if rc := g.rc("claude-version-corrupt"); rc != 0 || !strings.Contains(g.file("claude-version-corrupt.out"), "(Claude Code)") {
		t.Errorf("the previous version does not run after the failed upgrade: exit %d: %s", rc, g.out("claude-version-corrupt"))
	}
	if v := g.file("claude-versions.txt"); strings.Contains(v, e2eClaudeBad) || strings.Contains(v, e2eClaudeBadSig) || strings.Contains(v, "ccboot-tmp") {
		t.Errorf("the corrupted download left files:\n%s", v)
	}
	if !regexp.MustCompile(`(?m)^claude-code\s+drift\b`).MatchString(g.file("claude-migrate-check.out")) {
		t.Errorf("status --check does not see the npm layout:\n%s", g.out("claude-migrate-check"))
	}
	if rc := g.rc("claude-migrate"); rc != 0 {
		t.Errorf("repair from the npm layout: exit %d:\n%s", rc, g.out("claude-migrate"))
	}
	if got := strings.TrimSpace(g.file("claude-link-migrated.txt")); got != link(e2eClaudeVersion) {
		t.Errorf("after migration the link is %q, want %q", got, link(e2eClaudeVersion))
	}
	if got := g.file("npm-copy-migrated.txt"); !strings.Contains(got, "No such file") {
		t.Errorf("the npm copy survived the migration: %s", got)
	}
	if got := strings.Fields(g.file("claude-on-path-migrated.txt")); len(got) != 1 {
		t.Errorf("claude on ec2-user's PATH after migration: %q, want exactly one", got)
	}
	if rc := g.rc("claude-version-migrated"); rc != 0 || !strings.Contains(g.file("claude-version-migrated.out"), "(Claude Code)") {
		t.Errorf("claude --version after migration: exit %d: %s", rc, g.out("claude-version-migrated"))
	}
	if tmp := strings.TrimSpace(g.file("temp-files-claude.txt")); tmp != "" {
		t.Errorf("temp files left:\n%s", tmp)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
