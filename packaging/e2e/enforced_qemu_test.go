//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/broker"
)

// --- 13q. Enforced tiers under QEMU: Yama, a reboot, rootless Docker ----------
//
// Scenario 13's guest runs on the host's kernel, which may have no Yama
// LSM; then user-privileges rightly refuses enforced mode there. Here the
// guest is Debian's own kernel (Yama built in) under QEMU: the cache's disk,
// baked offline with `[tiers] mode = enforced` (packages with nftables and
// rootless Docker's tools, the IMDS filter's unit and the broker's socket
// enabled in the image), booted as an instance of an enforced stack with
// the template's baked-image UserData, then rebooted. IMDS is the real
// 169.254.169.254 inside the guest (forwarded to the loopback mock), the
// stand-in is at qemuStandin. Claude Code under TCG is too slow for the
// agent's part, which stays in scenario 13: this proves it at shell level.

// qemuStandin is the stand-in as a QEMU guest reaches it (boot-qemu.sh
// --fwd to the netns's 127.0.0.1:standinPort).
var qemuStandin = fmt.Sprintf("169.254.169.5:%d", standinPort)

func testEnforcedQEMU(t *testing.T, s *suite) {
	if os.Getenv("CCBOOT_E2E_QEMU") == "0" {
		t.Skip("CCBOOT_E2E_QEMU=0")
	}
	dir := filepath.Join(s.work, "enforced-qemu")
	bed := s.newEnforcedBed(t, "enforced-qemu", dir)
	img := s.copyQEMUDisk(t, dir)
	// Test-only, into the image (a baked boot has no UserData script to
	// reload units): ccboot's -v log, the broker's STS endpoint, the
	// user's endpoints of the stand-in. IMDS stays the default.
	add := filepath.Join(dir, "add")
	writeFile(t, filepath.Join(add, "etc/systemd/system/ccboot.service.d/e2e.conf"), dropIn(nil, "-v"))
	writeFile(t, filepath.Join(add, "etc/systemd/system/ccboot-broker.service.d/e2e.conf"), brokerDropInAt(qemuStandin, ""))
	writeFile(t, filepath.Join(add, "etc/profile.d/zz-e2e-endpoints.sh"), endpointsProfileAt(qemuStandin, ""))
	bakeOut := s.bakeOffline(t, filepath.Join(dir, "bake"), "image", img, add, "[tiers]\nmode = enforced\n")
	for _, want := range []string{"imds-filter", "credential-broker", "baked: ccboot"} {
		if !strings.Contains(bakeOut, want) {
			t.Errorf("bake output lacks %q:\n%s", want, bakeOut)
		}
	}

	inst := bakedInstance{name: "enforced-qemu", id: "i-0e2e0000000000001", region: claudeRegion,
		account: claudeAccount, stack: claudeStack, enforced: true}
	seed := filepath.Join(dir, "seed")
	s.writeSeed(t, seed, seedOpts{instanceID: inst.id, noUserData: true, cloudConfig: inst.userData(bakedUserData(t, s))})
	out, _ := s.boot(t, inst.name, bootOpts{
		qemu: true, image: img, seed: seed, probe: []string{"enforced-qemu.sh"}, netns: bed.ns,
		qemuFwd:  []string{qemuStandin},
		probeEnv: []string{"E2E_CCBOOT_FLAGS=-v", "E2E_STANDIN=" + qemuStandin}, timeout: 30 * time.Minute,
	})
	if n := strings.TrimSpace(readOr(filepath.Join(out, "done"))); n != "2" {
		t.Fatalf("the VM finished after %q boots, want 2", n)
	}
	roleRO, roleEL := "claudecode-readonly-"+claudeStack, "claudecode-elevated-"+claudeStack
	roARN := fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/claudecode-readonly-session", claudeAccount, roleRO)
	for n := 1; n <= 2; n++ {
		g := bootDir(t, out, n)
		boot := fmt.Sprintf("boot %d", n)
		if st, rc := g.cloudInit(); st != "done" || rc != 0 {
			t.Errorf("%s: cloud-init %q exit %d:\n%s", boot, st, rc, g.file("cloud-init-status.txt"))
		}
		checkEnforcedBootOrder(t, g, boot)

		// The state of the boot's run: every step ok or changed, the two
		// units already in sync from the image (not brought up by the run).
		for _, st := range g.report("state-boot.json").Steps {
			if st.Result != "ok" && st.Result != "changed" {
				t.Errorf("%s: step %s %s: %s", boot, st.Name, st.Result, st.Error)
			}
			if (st.Name == "imds-filter" || st.Name == "credential-broker") && st.Result != "ok" {
				t.Errorf("%s: step %s %s %v at boot, want ok: the baked unit was not in place", boot, st.Name, st.Result, st.Changes)
			}
		}
		if st := g.out("status"); g.rc("status") != 0 || !strings.Contains(st, "tiers: enforced") {
			t.Errorf("%s: ccboot status: exit %d, want 0 with `tiers: enforced`:\n%s", boot, g.rc("status"), st)
		}

		// IMDS: refused to the user, answered to root.
		if rc := g.rc("imds-user"); rc == 0 || g.file("imds-user.out") != "" {
			t.Errorf("%s: IMDS token PUT as ec2-user: exit %d, token %q; want refused", boot, rc, g.file("imds-user.out"))
		}
		if rc := g.rc("root-imds"); rc != 0 || strings.TrimSpace(g.file("root-imds.out")) == "" {
			t.Errorf("%s: IMDS token PUT as root: exit %d, want a token: %s", boot, rc, g.out("root-imds"))
		}
		// The broker: ReadOnly, and Elevated refused with the approval message.
		if rc, o := g.rc("aws-ro"), g.file("aws-ro.out"); rc != 0 || !strings.Contains(o, `"Arn": "`+roARN+`"`) {
			t.Errorf("%s: aws sts get-caller-identity --profile claudecode-readonly: exit %d, want %s:\n%s", boot, rc, roARN, g.out("aws-ro"))
		}
		for _, name := range []string{"aws-el", "creds-el"} {
			if rc, e := g.rc(name), g.file(name+".err"); rc == 0 || !strings.Contains(e, broker.NotApproved) {
				t.Errorf("%s: %s as ec2-user: exit %d %q, want refused with %q", boot, name, rc, e, broker.NotApproved)
			}
		}
		// No root for the user.
		if rc, e := g.rc("sudo"), g.file("sudo.err"); rc == 0 || !strings.Contains(e, "a password is required") {
			t.Errorf("%s: sudo -n true as ec2-user: exit %d %q, want refused for want of a password (no rule)", boot, rc, e)
		}
		_, groups, _ := strings.Cut(g.file("id.out"), "groups=")
		for _, grp := range []string{"docker", "wheel", "sudo", "adm", "root"} {
			if regexp.MustCompile(`\(` + grp + `\)`).MatchString(groups) {
				t.Errorf("%s: id as ec2-user shows group %s: %s", boot, grp, g.file("id.out"))
			}
		}
		checkRootlessDocker(t, g, boot)
	}

	// Boot 2's run found the enforced instance as boot 1 left it.
	if r := bootDir(t, out, 2).report("state-boot.json"); r.changes() != 0 {
		t.Errorf("boot 2: ccboot's run at boot changed %d things, want 0: %s", r.changes(), bootDir(t, out, 2).file("state-boot.json"))
	}

	g := bootDir(t, out, 1)
	// user-privileges converged on a kernel with Yama.
	if v, err := strconv.Atoi(strings.TrimSpace(g.file("ptrace.out"))); err != nil || v < 1 {
		t.Errorf("kernel.yama.ptrace_scope %q (%s), want >= 1", g.file("ptrace.out"), g.file("ptrace.err"))
	}
	if c := g.file("ptrace.conf"); !regexp.MustCompile(`(?m)^kernel\.yama\.ptrace_scope\s*=\s*[1-3]\s*$`).MatchString(c) {
		t.Errorf("/etc/sysctl.d/60-ccboot-ptrace.conf does not keep ptrace_scope >= 1:\n%s", c)
	}
	if o := g.out("sudo-l"); !strings.Contains(o, "User ec2-user is not allowed to run sudo") {
		t.Errorf("sudo -l -U ec2-user (exit %d): want no rule:\n%s", g.rc("sudo-l"), o)
	}
	if rc := g.rc("visudo"); rc != 0 {
		t.Errorf("visudo -c: exit %d:\n%s", rc, g.out("visudo"))
	}
	if c := g.file("cloud-init-sudoers.out"); strings.Contains(c, "ec2-user") {
		t.Errorf("cloud-init's sudoers file still names ec2-user:\n%s", c)
	}
	t.Logf("as ec2-user: %s; sudo -n true: exit %d: %s; sudo -l -U: %s", strings.TrimSpace(g.file("id.out")),
		g.rc("sudo"), strings.TrimSpace(g.file("sudo.err")), strings.TrimSpace(g.out("sudo-l")))
	// doctor as root: every check, the enforced ones among them.
	doctor := g.out("doctor")
	if rc := g.rc("doctor"); rc != 0 || !regexp.MustCompile(`doctor: all \d+ checks passed`).MatchString(doctor) {
		t.Errorf("ccboot doctor as root: exit %d, want 0 with all checks passed:\n%s", rc, doctor)
	}
	lines := doctorLines(doctor)
	for _, name := range []string{"user-no-root", "user-no-imds", "readonly-no-elevated", "broker-readonly", "broker-elevated-refused"} {
		if lines[name].mark != "ok" {
			t.Errorf("doctor's enforced check %s: %q, want ok:\n%s", name, lines[name], doctor)
		}
	}
	t.Logf("ccboot doctor as root (boot 1):\n%s", doctor)

	// The stand-in: ReadOnly assumed with the instance key (the broker's),
	// and nothing signed by Elevated or assuming it, except by root's
	// doctor, which walks the Elevated chain with the instance role as root
	// may. The probe brackets doctor with two unsigned marker requests to
	// Bedrock's runtime (no other request of the scenario is one).
	var viaInstance bool
	var marks int
	for _, r := range readStandinLog(t, bed.logFile) {
		if r.Service == "bedrock-runtime" && r.AccessKey == "" {
			marks++
			continue
		}
		if marks == 1 {
			continue // doctor's
		}
		if r.Action == "sts:AssumeRole" && strings.HasSuffix(r.Resource, ":role/"+roleRO) && r.Decision == "Allowed" {
			viaInstance = true
			if r.AccessKey != instanceKeyID {
				t.Errorf("AssumeRole of %s signed by %s (role %s), want the instance key: the broker is root's", roleRO, r.AccessKey, r.Role)
			}
		}
		if roleIs(r.Role, roleEL) || (r.Action == "sts:AssumeRole" && strings.HasSuffix(r.Resource, ":role/"+roleEL) && r.Decision == "Allowed") {
			t.Errorf("%s %s by %s %s: Elevated without an approval", r.Service, r.Action, r.Role, r.Decision)
		}
	}
	if !viaInstance {
		t.Errorf("no allowed AssumeRole of %s in the stand-in's log", roleRO)
	}
	if marks != 2 {
		t.Errorf("the stand-in's log has %d of the probe's marker requests around doctor, want 2", marks)
	}
}

// checkEnforcedBootOrder asserts that on this boot the IMDS filter was
// loaded and the broker's socket listened before systemd-user-sessions let
// anyone log in, before the user's manager (linger) started, and before
// the user's first session; the table is live and the filter's unit is
// ordered early (never after network-online.target).
func checkEnforcedBootOrder(t *testing.T, g guest, boot string) {
	t.Helper()
	at := func(unit, prop string) int64 {
		u := kv(g.file("unit-" + unit + ".txt"))
		v, _ := strconv.ParseInt(u[prop], 10, 64)
		return v
	}
	filter := at("ccboot-imds-filter.service", "ActiveEnterTimestampMonotonic")
	socket := at("ccboot-broker.socket", "ActiveEnterTimestampMonotonic")
	sessions := at("systemd-user-sessions.service", "ActiveEnterTimestampMonotonic")
	manager := at("user@1000.service", "InactiveExitTimestampMonotonic")
	login := firstLogin(g.file("journal.txt"), "ec2-user")
	t.Logf("%s (µs since boot): imds filter active %d, broker socket listening %d, user sessions allowed %d, ec2-user's manager started %d, ec2-user's first session %d",
		boot, filter, socket, sessions, manager, login)
	for _, u := range []string{"ccboot-imds-filter.service", "ccboot-broker.socket"} {
		if st := kv(g.file("unit-" + u + ".txt"))["ActiveState"]; st != "active" {
			t.Errorf("%s: %s is %q", boot, u, st)
		}
	}
	if filter == 0 || sessions == 0 || filter >= sessions {
		t.Errorf("%s: the IMDS filter was active at %d µs, systemd-user-sessions at %d: want the filter first", boot, filter, sessions)
	}
	if socket == 0 || socket >= sessions {
		t.Errorf("%s: the broker's socket listened at %d µs, systemd-user-sessions at %d: want the socket first", boot, socket, sessions)
	}
	if manager != 0 && manager <= filter {
		t.Errorf("%s: ec2-user's manager started at %d µs, before the IMDS filter (%d)", boot, manager, filter)
	}
	if login == 0 || login <= filter || login <= socket {
		t.Errorf("%s: ec2-user's first session at %d µs (journal), the filter at %d, the socket at %d: want the session last", boot, login, filter, socket)
	}
	if rc, tbl := g.rc("nft-table"), g.file("nft-table.out"); rc != 0 || !strings.Contains(tbl, "table inet ccboot_imds") || !strings.Contains(tbl, "169.254.169.254") {
		t.Errorf("%s: nft list table inet ccboot_imds: exit %d:\n%s", boot, rc, g.out("nft-table"))
	}
	unit := kv(g.file("unit-ccboot-imds-filter.service.txt"))
	if strings.Contains(unit["After"], "network-online.target") || !strings.Contains(unit["Before"], "network-pre.target") || !strings.Contains(unit["WantedBy"], "sysinit.target") {
		t.Errorf("%s: ccboot-imds-filter.service ordering: After=%s Before=%s WantedBy=%s; want before network-pre.target, wanted by sysinit.target, never after network-online.target",
			boot, unit["After"], unit["Before"], unit["WantedBy"])
	}
}

// firstLogin is when (µs since boot, from the journal in short-monotonic)
// PAM first opened a session of user, by any service (su, sshd, login, or
// systemd-user for the user's manager), or 0.
func firstLogin(journal, user string) int64 {
	re := regexp.MustCompile(`(?m)^\[\s*(\d+)\.(\d{6})\] \S+ [^:]+: pam_unix\([^)]*:session\): session opened for user ` + regexp.QuoteMeta(user) + `\(`)
	m := re.FindStringSubmatch(journal)
	if m == nil {
		return 0
	}
	sec, _ := strconv.ParseInt(m[1], 10, 64)
	us, _ := strconv.ParseInt(m[2], 10, 64)
	return sec*1e6 + us
}

// checkRootlessDocker asserts the user's containers run on their own
// rootless daemon (boot 2: started by linger, the image still in the
// user's store), the root daemon's socket is refused to them, and host
// networking reaches the stand-in but not IMDS.
func checkRootlessDocker(t *testing.T, g guest, boot string) {
	t.Helper()
	info := g.file("docker-info.out")
	if rc := g.rc("docker-info"); rc != 0 || !strings.Contains(info, "DOCKER_HOST=unix:///run/user/1000/docker.sock") || !strings.Contains(info, "rootless") ||
		!strings.Contains(info, "/home/ec2-user/.local/share/docker") {
		t.Errorf("%s: docker info as ec2-user: exit %d, want the rootless daemon of /run/user/1000:\n%s", boot, rc, g.out("docker-info"))
	}
	if boot == "boot 1" && g.rc("docker-import") != 0 {
		t.Errorf("%s: docker import as ec2-user: %s", boot, g.out("docker-import"))
	}
	// Root inside the container is the user outside: uid 0 in its own
	// user namespace.
	if rc, o := g.rc("docker-run"), strings.TrimSpace(g.file("docker-run.out")); rc != 0 || o != "0" {
		t.Errorf("%s: docker run of the local image as ec2-user: exit %d %q, want 0 and `0`:\n%s", boot, rc, o, g.out("docker-run"))
	}
	if rc, o := g.rc("docker-imds"), g.file("docker-imds.out"); rc == 0 || strings.Contains(o, "HTTP/") {
		t.Errorf("%s: docker run --network host to IMDS as ec2-user: exit %d, want refused, got:\n%s", boot, rc, g.out("docker-imds"))
	}
	if rc, o := g.rc("docker-standin"), g.file("docker-standin.out"); rc != 0 || !strings.Contains(o, "HTTP/1.") {
		t.Errorf("%s: docker run --network host to the stand-in as ec2-user (the control): exit %d, want an HTTP answer:\n%s", boot, rc, g.out("docker-standin"))
	}
	t.Logf("%s: as ec2-user, docker run --network host to IMDS: exit %d: %s", boot, g.rc("docker-imds"), strings.TrimSpace(g.out("docker-imds")))
	if rc, e := g.rc("root-socket"), g.file("root-socket.err"); rc == 0 || !strings.Contains(e, "permission denied") {
		t.Errorf("%s: docker ps on /var/run/docker.sock as ec2-user: exit %d %q, want permission denied", boot, rc, e)
	}
	if st := strings.TrimSpace(g.file("root-docker-active.out")); st != "active" {
		t.Errorf("%s: the root daemon is %q; the socket refusal proves nothing without it", boot, st)
	}
	if imgs := g.file("root-images.out"); g.rc("root-images") != 0 || strings.Contains(imgs, "e2e-busybox") {
		t.Errorf("%s: the root daemon's images (exit %d) hold the user's: %s", boot, g.rc("root-images"), g.out("root-images"))
	}
}
