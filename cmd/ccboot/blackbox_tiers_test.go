package main

import (
	"bytes"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// [tiers] mode = enforced through the real binary under --root: the IMDS
// filter's rules (covering the configured endpoint too) and its unit are
// written and the unit enabled, the user leaves wheel and loses
// cloud-init's sudo rule and stays out of group docker, a
// second run changes nothing, and going back to advisory removes the
// filter and lets docker-group add the user as before.
func TestBlackboxEnforcedTiersUnderRoot(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	u, err := url.Parse(imds)
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"--root", root, "--imds-endpoint", imds}
	// The user as Amazon Linux's cloud-init leaves it: in wheel, with a
	// NOPASSWD rule; gpasswd and visudo are the real ones.
	for _, tool := range []string{"gpasswd", "visudo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	appendTo := func(name, line string) {
		f, err := os.OpenFile(filepath.Join(root, name), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
	}
	appendTo("etc/group", "wheel:x:10:ec2-user\n")
	appendTo("etc/gshadow", "wheel:::ec2-user\n")
	sudoers := filepath.Join(root, "etc/sudoers.d/90-cloud-init-users")
	if err := os.MkdirAll(filepath.Dir(sudoers), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sudoers, []byte("# User rules for ec2-user\nec2-user ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	enforced := append([]string{"--set", "tiers.mode=enforced"}, flags...)

	first := ccboot(t, append([]string{"run"}, enforced...)...)
	if first.code != 0 || !strings.Contains(first.stdout, "imds-filter   changed") {
		t.Fatalf("enforced run exit %d\n%s%s", first.code, first.stdout, first.stderr)
	}
	rules, err := os.ReadFile(filepath.Join(root, "etc/ccboot/imds-filter.nft"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ip daddr 169.254.169.254 tcp dport 80 meta skuid != 0 reject",
		"ip6 daddr fd00:ec2::254 tcp dport 80 meta skuid != 0 reject",
		"ip daddr " + u.Hostname() + " tcp dport " + u.Port() + " meta skuid != 0 reject",
	} {
		if !strings.Contains(string(rules), want) {
			t.Errorf("rules lack %q:\n%s", want, rules)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system/ccboot-imds-filter.service"))
	checkedIn, _ := os.ReadFile("../../packaging/systemd/ccboot-imds-filter.service")
	if len(unit) == 0 || !bytes.Equal(unit, checkedIn) {
		t.Errorf("unit written differs from packaging/systemd's:\n%s", unit)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/sysinit.target.wants/ccboot-imds-filter.service")); err != nil {
		t.Errorf("ccboot-imds-filter.service not enabled: %v", err)
	}
	if line := dockerGroupLine(t, root); !strings.HasPrefix(line, "docker:x:") || strings.Contains(line, "ec2-user") {
		t.Errorf("enforced: group docker is %q, want it without ec2-user", line)
	}
	if group, _ := os.ReadFile(filepath.Join(root, "etc/group")); !strings.Contains(string(group), "\nwheel:x:10:\n") {
		t.Errorf("ec2-user is still in wheel:\n%s", group)
	}
	if data, _ := os.ReadFile(sudoers); strings.Contains(string(data), "ec2-user") {
		t.Errorf("cloud-init's sudo rule is still there:\n%s", data)
	}
	if data, _ := os.ReadFile(filepath.Join(root, "etc/sysctl.d/60-ccboot-ptrace.conf")); !strings.Contains(string(data), "kernel.yama.ptrace_scope = 1") {
		t.Errorf("no ptrace sysctl file: %q", data)
	}
	rep, _ := statusJSON(t, enforced...)
	if st, ok := rep.Step("docker-group"); !ok || !strings.Contains(strings.Join(st.Notes, "\n"), "not added to group docker, which grants root") {
		t.Errorf("status does not say why the user is not in group docker: %+v", st)
	}

	second := ccboot(t, append([]string{"repair"}, enforced...)...)
	if second.code != 0 || !strings.Contains(second.stdout, "done: 0 changed, 12 ok") {
		t.Fatalf("second enforced run exit %d, want no changes:\n%s%s", second.code, second.stdout, second.stderr)
	}

	back := ccboot(t, append([]string{"run"}, flags...)...)
	if back.code != 0 || !strings.Contains(back.stdout, "imds-filter   changed") {
		t.Fatalf("advisory run after enforced exit %d\n%s%s", back.code, back.stdout, back.stderr)
	}
	for _, p := range []string{"etc/ccboot/imds-filter.nft", "etc/systemd/system/ccboot-imds-filter.service", "etc/systemd/system/sysinit.target.wants/ccboot-imds-filter.service"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("advisory left %s", p)
		}
	}
	if line := dockerGroupLine(t, root); !strings.HasSuffix(line, ":ec2-user") {
		t.Errorf("advisory: group docker is %q, want ec2-user in it", line)
	}
}

func dockerGroupLine(t *testing.T, root string) string {
	t.Helper()
	group, err := os.ReadFile(filepath.Join(root, "etc/group"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(group), "\n") {
		if strings.HasPrefix(line, "docker:") {
			return line
		}
	}
	return ""
}
