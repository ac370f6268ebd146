//go:build e2e

package e2e

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/packaging/awsstandin"
	"github.com/ccboot/ccboot/packaging/cfn"
)

// --- 12. Claude Code on Bedrock as ec2-user, outside the US -----------------
//
// A guest boots in eu-west-1 through the shipped UserData and cloud-init;
// then the real Claude Code that ccboot installed, and the real AWS CLI v2,
// run as ec2-user in an interactive login shell, against the loopback STS +
// Bedrock stand-in (packaging/awsstandin), which decides every request with
// the CloudFormation template's own policies for this stack.

const (
	claudeRegion  = "eu-west-1"
	claudeAccount = "246813579135"
	claudeStack   = "cce2e"
	// standinPort is where the stand-in listens in the guest's netns.
	standinPort = 4599
	// Two more stand-ins beside it, each deciding with a template copy
	// that breaks one link of the chain; only doctor's command line
	// points at them (see claude-user.sh).
	trustBrokenPort = 4600 // ReadOnly's trust policy names another role
	noInvokePort    = 4601 // BedrockPolicy without bedrock:InvokeModel
	// And one with the intact template for an account that has no
	// Marketplace agreement for the model yet (aws-standin --not-subscribed).
	notSubscribedPort = 4602
	// And one whose Bedrock runs escalationScript through Claude Code's
	// Bash tool (aws-standin --agent-script), for the agent session only.
	agentPort = 4603
	// The instance role's credentials as the metadata mock hands them out;
	// the stand-in treats this key as issued for the instance role.
	instanceKeyID  = "ASIAE2EINSTANCEKEY01"
	instanceSecret = "e2e-instance-role-secret-key-0000000000"
	// standinGuestDir is where the guest sees the stand-in's log (read-only).
	standinGuestDir = "/srv/e2e-standin"
)

// endpointsProfile is the ONLY test-only setting in ec2-user's environment:
// the loopback endpoints of the stand-in and the metadata mock, and no
// non-essential traffic. Everything else ec2-user's shell gets comes from
// what ccboot wrote (/etc/profile.d/claude-bedrock.sh, ~/.bashrc,
// ~/.aws/config). The zz- name sorts it after claude-bedrock.sh. The
// metadata endpoint ends in a slash: the AWS CLI appends "latest/..." to it.
var endpointsProfile = endpointsProfileAt(fmt.Sprintf("127.0.0.1:%d", standinPort), nspawnIMDS+"/")

// endpointsProfileAt is endpointsProfile for a stand-in the guest reaches
// at addr (host:port) and a metadata endpoint imds; "" leaves the SDKs'
// default (169.254.169.254, as a QEMU guest has it).
func endpointsProfileAt(addr, imds string) string {
	var b strings.Builder
	b.WriteString("# TEST-ONLY (ccboot e2e scenarios 12, 13, 13q): the stand-in's endpoints, nothing else.\n")
	if imds != "" {
		fmt.Fprintf(&b, "export AWS_EC2_METADATA_SERVICE_ENDPOINT=%s\n", imds)
	}
	fmt.Fprintf(&b, `export AWS_ENDPOINT_URL_STS=http://%[1]s
export AWS_ENDPOINT_URL_BEDROCK=http://%[1]s
export AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://%[1]s
export ANTHROPIC_BEDROCK_BASE_URL=http://%[1]s
export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
`, addr)
	return b.String()
}

// standinRecord is one line of the stand-in's request log
// (awsstandin.Request): Action is the IAM action ("sts:AssumeRole"), Role
// the ARN of the role the signing key was issued for, Decision the IAM
// engine's (Allowed, ImplicitlyDenied, ExplicitlyDenied).
type standinRecord struct {
	Service   string `json:"service"`
	Action    string `json:"action"`
	Resource  string `json:"resource"`
	AccessKey string `json:"accessKey"`
	Role      string `json:"role"`
	Session   string `json:"session"`
	Decision  string `json:"decision"`
	Status    int    `json:"status"`
	ModelID   string `json:"modelId"`
	Error     string `json:"error"`
	// Marketplace: the decision on the caller's subscription through
	// Bedrock, when an invoke subscribed (or failed to subscribe) the account.
	Marketplace string `json:"marketplace"`
	// ToolUse, ToolResults: the scripted agent's (aws-standin --agent-script).
	ToolUse     string                  `json:"toolUse"`
	ToolResults []awsstandin.ToolResult `json:"toolResults"`
	// Messages, WorkDir: a conversation turn's messages as text and the
	// working directory Claude Code told the model.
	Messages []awsstandin.Message `json:"messages"`
	WorkDir  string               `json:"workDir"`
}

func testClaudeBedrock(t *testing.T, s *suite) {
	dir := filepath.Join(s.work, "claude")
	roleRO := "claudecode-readonly-" + claudeStack
	roleEL := "claudecode-elevated-" + claudeStack
	roleEC2 := "claudecode-ec2-" + claudeStack

	mock := s.instanceRoleMock(t, "claude")
	ns := fmt.Sprintf("ccboot-e2e-claude-%d", os.Getpid())
	netns := filepath.Join(s.e2eDir, "netns.sh")
	if b, err := exec.Command(netns, "up", ns, mock).CombinedOutput(); err != nil {
		t.Fatalf("netns.sh up: %v\n%s", err, b)
	}
	t.Cleanup(func() { _ = exec.Command(netns, "down", ns).Run() })
	logDir := filepath.Join(dir, "standin")
	logFile := filepath.Join(logDir, "requests.jsonl")
	trustLog := filepath.Join(logDir, "requests-trust.jsonl")
	noInvokeLog := filepath.Join(logDir, "requests-noinvoke.jsonl")
	notSubscribedLog := filepath.Join(logDir, "requests-notsubscribed.jsonl")
	bin := s.buildStandin(t)
	s.startStandin(t, bin, ns, filepath.Join(s.repo, "packaging", "cloudformation", "ccboot.yaml"), standinPort, logFile)
	// The broken links, as the host-side TestBlackboxDoctorStandin makes
	// them: ReadOnly's trust policy names a role that is not the instance
	// role; BedrockPolicy lacks bedrock:InvokeModel (ReadOnlyAccess does not
	// grant it, so ReadOnly may still describe the model but not invoke it).
	tpls := filepath.Join(dir, "templates")
	s.startStandin(t, bin, ns, s.mutatedTemplate(t, tpls, "trust-broken", [2]string{
		"aws:PrincipalArn: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/claudecode-ec2-${AWS::StackName}",
		"aws:PrincipalArn: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/someone-else"}), trustBrokenPort, trustLog)
	s.startStandin(t, bin, ns, s.mutatedTemplate(t, tpls, "no-invoke", [2]string{
		"              - bedrock:InvokeModel\n", ""}), noInvokePort, noInvokeLog)
	s.startStandin(t, bin, ns, filepath.Join(s.repo, "packaging", "cloudformation", "ccboot.yaml"), notSubscribedPort, notSubscribedLog, "--not-subscribed")
	agentLog := filepath.Join(logDir, "requests-agent.jsonl")
	s.startStandin(t, bin, ns, filepath.Join(s.repo, "packaging", "cloudformation", "ccboot.yaml"), agentPort, agentLog,
		"--agent-script", writeAgentScript(t, dir, escalationScript))

	seed := filepath.Join(dir, "seed")
	endpoints := writeFiles(guestFile{"/etc/profile.d/zz-e2e-endpoints.sh", endpointsProfile})
	s.writeSeed(t, seed, seedOpts{dropIn: dropIn(nspawnEnv, nspawnFlags), cloudConfig: endpoints})
	out, _ := s.boot(t, "claude", bootOpts{
		seed: seed, probe: []string{"claude-user.sh"}, netns: ns, docker: true, timeout: 10 * time.Minute,
		nspawnArgs: []string{"--bind-ro=" + logDir + ":" + standinGuestDir},
		probeEnv: append([]string{
			"E2E_CCBOOT_FLAGS=" + nspawnFlags,
			"E2E_STANDIN_LOG=" + standinGuestDir + "/requests.jsonl",
			"E2E_STANDIN_PORT=" + strconv.Itoa(standinPort),
			"E2E_STANDIN_TRUST_PORT=" + strconv.Itoa(trustBrokenPort),
			"E2E_STANDIN_NOINVOKE_PORT=" + strconv.Itoa(noInvokePort),
			"E2E_STANDIN_NOTSUBSCRIBED_PORT=" + strconv.Itoa(notSubscribedPort),
			"E2E_STANDIN_AGENT_PORT=" + strconv.Itoa(agentPort),
		}, nspawnEnv...),
	})
	g := bootDir(t, out, 1)
	if st, rc := g.cloudInit(); st != "done" || rc != 0 {
		t.Fatalf("cloud-init: %q exit %d, want done/0\n%s", st, rc, g.file("cloud-init-status.txt"))
	}
	if rc := g.rc("status-json"); rc != 0 {
		t.Fatalf("ccboot status after boot exited %d: %s", rc, g.out("status-json"))
	}
	if v := g.file("aws-version.out"); !strings.HasPrefix(v, "aws-cli/2.17.3 ") {
		t.Errorf("aws --version in the guest: %q, want the AWS CLI 2.17.3 cache.sh installs", v)
	}
	if e := g.file("session.rc"); strings.TrimSpace(e) != "0" {
		t.Errorf("the login session exited %s; transcript:\n%s", strings.TrimSpace(e), tail(g.file("transcript.txt"), 40))
	}
	if b, err := os.ReadFile(filepath.Join(g.dir, "session-errors.txt")); err == nil {
		t.Fatalf("the login session: %s; transcript:\n%s", b, tail(g.file("transcript.txt"), 40))
	}

	// The shell is ec2-user's login shell, and its settings are ccboot's.
	profile := g.file("profile.sh")
	model := shellValue(profile, "ANTHROPIC_MODEL")
	if !strings.HasPrefix(model, "eu.") {
		t.Errorf("ANTHROPIC_MODEL in eu-west-1 is %q, want an eu. inference profile:\n%s", model, profile)
	}
	if got := strings.TrimSpace(g.file("whoami.out")); got != "ec2-user" {
		t.Errorf("whoami in the session: %q", got)
	}
	env := kv(g.file("env.out"))
	for k, v := range map[string]string{
		"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": claudeRegion, "ANTHROPIC_MODEL": model,
		"HOME": "/home/ec2-user", "USER": "ec2-user",
	} {
		if env[k] != v {
			t.Errorf("ec2-user's login shell has %s=%q, want %q (from /etc/profile.d/claude-bedrock.sh)", k, env[k], v)
		}
	}
	// No credentials or profile in the environment: they come from
	// ~/.aws/config through the aliases.
	for _, k := range []string{"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"} {
		if v, ok := env[k]; ok {
			t.Errorf("ec2-user's login shell has %s=%q; nothing may set it", k, v)
		}
	}
	aliases := g.file("alias.out")
	for _, want := range []string{"alias claude-ro='AWS_PROFILE=claudecode-readonly claude'", "alias claude-el='AWS_PROFILE=claudecode-elevated claude'"} {
		if !strings.Contains(aliases, want) {
			t.Errorf("the session's aliases lack %q:\n%s", want, aliases)
		}
	}

	all := readStandinLog(t, logFile)
	window := func(name string) []standinRecord {
		from, err1 := strconv.Atoi(strings.TrimSpace(g.file(name + ".log-from")))
		to, err2 := strconv.Atoi(strings.TrimSpace(g.file(name + ".log-to")))
		if err1 != nil || err2 != nil || from > to || to > len(all) {
			t.Fatalf("%s: log window %q..%q of %d lines", name, g.file(name+".log-from"), g.file(name+".log-to"), len(all))
		}
		return all[from:to]
	}
	// claude-ro and claude-el answer through the stand-in, every Bedrock
	// request signed by the tier's own assumed-role key.
	for _, c := range []struct {
		name, role, session, via string
	}{
		{"claude-ro", roleRO, "claudecode-readonly-session", roleEC2},
		{"claude-el", roleEL, "claudecode-elevated-session", roleRO},
	} {
		reply := g.file(c.name + ".out")
		if rc := g.rc(c.name); rc != 0 {
			t.Errorf("%s -p: exit %d\n%s", c.name, rc, g.out(c.name))
		}
		// The stand-in's answer names who signed the prompt's request.
		if want := fmt.Sprintf("standin: role=%s session=%s model=%s", c.role, c.session, model); !strings.Contains(reply, want) {
			t.Errorf("%s -p answered %q; want the stand-in's reply %q (stderr: %s)", c.name, reply, want, g.file(c.name+".err"))
		}
		w := window(c.name)
		var streams int
		var bedrock int
		for _, r := range w {
			if r.Service == "sts" {
				continue
			}
			bedrock++
			if !roleIs(r.Role, c.role) || r.Session != c.session {
				t.Errorf("%s: Bedrock %s %s signed by %s (role %q session %q), want role %s session %s", c.name, r.Action, r.ModelID, r.AccessKey, r.Role, r.Session, c.role, c.session)
			}
			if r.Action == "bedrock:InvokeModelWithResponseStream" && r.Decision == "Allowed" && r.Status == 200 {
				streams++
				if r.ModelID != model {
					t.Errorf("%s: the prompt went to model %q, want ANTHROPIC_MODEL %q", c.name, r.ModelID, model)
				}
			}
		}
		if bedrock == 0 || streams == 0 {
			t.Errorf("%s: %d Bedrock requests, %d allowed InvokeModelWithResponseStream; want the prompt answered:\n%s", c.name, bedrock, streams, fmtRecords(w))
		}
		// Its role's key came from an AssumeRole signed by the key of the
		// tier before it (instance role -> ReadOnly -> Elevated).
		var assumed bool
		for _, r := range w {
			if r.Service == "sts" && r.Action == "sts:AssumeRole" && strings.HasSuffix(r.Resource, ":role/"+c.role) && r.Decision == "Allowed" {
				if !roleIs(r.Role, c.via) {
					t.Errorf("%s: AssumeRole of %s signed by %s (role %q), want a key of %s", c.name, c.role, r.AccessKey, r.Role, c.via)
				}
				if c.via == roleEC2 && r.AccessKey != instanceKeyID {
					t.Errorf("%s: AssumeRole of %s signed by %s, want the instance key %s from IMDS", c.name, c.role, r.AccessKey, instanceKeyID)
				}
				if c.via == roleRO && r.Session != "claudecode-readonly-session" {
					t.Errorf("%s: AssumeRole of %s signed by a ReadOnly key of session %q, want claudecode-readonly-session", c.name, c.role, r.Session)
				}
				assumed = true
			}
		}
		if !assumed {
			t.Errorf("%s: no allowed AssumeRole of %s:\n%s", c.name, c.role, fmtRecords(w))
		}
	}

	// Plain claude has only the instance role: Bedrock refuses it.
	plain := window("claude-plain")
	if rc := g.rc("claude-plain"); rc == 0 {
		t.Errorf("plain claude -p (instance role only) exited 0: %s", g.out("claude-plain"))
	}
	// Every request is the instance key's and refused; the prompt itself
	// is refused by IAM (some availability probes name models the
	// stand-in does not serve: those are a 400 before any IAM decision).
	var denied int
	var promptDenied bool
	for _, r := range plain {
		if r.Service == "sts" {
			t.Errorf("plain claude called STS %s", r.Action)
			continue
		}
		if r.AccessKey != instanceKeyID || r.Decision == "Allowed" || r.Status < 400 {
			t.Errorf("plain claude: Bedrock %s signed by %s was %q %d, want refused for the instance key %s", r.Action, r.AccessKey, r.Decision, r.Status, instanceKeyID)
		}
		if strings.HasSuffix(r.Decision, "Denied") && r.Status == 403 {
			denied++
			if r.Action == "bedrock:InvokeModelWithResponseStream" && r.ModelID == model {
				promptDenied = true
			}
		}
	}
	if !promptDenied {
		t.Errorf("plain claude: no IAM-denied InvokeModelWithResponseStream of %s (so its failure proves nothing):\n%s%s", model, fmtRecords(plain), g.out("claude-plain"))
	}
	t.Logf("plain claude -p (instance role): exit %d, %d denied Bedrock requests, %d ms; stderr: %s", g.rc("claude-plain"), denied, g.ms("claude-plain"), strings.TrimSpace(g.file("claude-plain.err")+g.file("claude-plain.out")))

	// The AWS CLI v2 with the same profiles.
	for _, c := range []struct{ name, role, session string }{
		{"aws-ro", roleRO, "claudecode-readonly-session"},
		{"aws-el", roleEL, "claudecode-elevated-session"},
	} {
		var id struct{ Arn, Account string }
		if rc := g.rc(c.name); rc != 0 {
			t.Errorf("%s: aws sts get-caller-identity exited %d: %s", c.name, rc, g.out(c.name))
			continue
		}
		if err := json.Unmarshal([]byte(g.file(c.name+".out")), &id); err != nil {
			t.Errorf("%s: %v: %s", c.name, err, g.out(c.name))
		}
		want := fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", claudeAccount, c.role, c.session)
		if id.Arn != want {
			t.Errorf("%s: get-caller-identity Arn %q, want %q", c.name, id.Arn, want)
		}
	}

	// ccboot doctor, typed as README says (sudo), passes against the
	// stand-in in the same guest.
	doctor := g.file("doctor.out")
	if rc := g.rc("doctor"); rc != 0 || !strings.Contains(doctor, "doctor: all 9 checks passed") {
		t.Errorf("sudo ccboot doctor: exit %d, want 0 with all checks passed:\n%s%s", rc, doctor, g.file("doctor.err"))
	}
	for _, want := range []string{
		fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/claudecode-readonly-session", claudeAccount, roleRO),
		fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/claudecode-elevated-session", claudeAccount, roleEL),
		model + " in " + claudeRegion,
	} {
		if !strings.Contains(doctor, want) {
			t.Errorf("ccboot doctor's output lacks %q:\n%s", want, doctor)
		}
	}
	t.Logf("ccboot doctor as ec2-user typed it (sudo):\n%s", doctor)

	// One link broken at a time, in the same guest: doctor names that
	// check FAIL with its fix, skips what depends on it, exit 1. Only the
	// endpoints on doctor's own command line differ (claude-user.sh).
	modelSkips := map[string]string{"model-access": "skip", "readonly-invoke": "skip", "elevated-invoke": "skip"}
	for _, c := range []struct {
		name, fail, detail, summary string
		skips                       map[string]string
	}{
		{"doctor-trust", "readonly-profile", "STS AssumeRole: AccessDenied", "doctor: 1 of 9 checks failed, 5 skipped because of them",
			map[string]string{"elevated-profile": "skip", "bedrock-model": "skip", "model-access": "skip", "readonly-invoke": "skip", "elevated-invoke": "skip"}},
		{"doctor-noinvoke", "readonly-invoke", "the ReadOnly role may not invoke " + model + ": Bedrock Runtime InvokeModel: AccessDeniedException", "doctor: 1 of 9 checks failed", nil},
		{"doctor-geo", "bedrock-model", "Region " + claudeRegion + " cannot use the us. inference profile", "doctor: 1 of 9 checks failed, 3 skipped because of them", modelSkips},
	} {
		out := g.file(c.name + ".out")
		if rc := g.rc(c.name); rc != 1 {
			t.Errorf("%s: exit %d, want 1:\n%s%s", c.name, rc, out, g.file(c.name+".err"))
		}
		got := doctorLines(out)
		for _, check := range []string{"imds-credentials", "aws-config-file", "readonly-profile", "elevated-profile", "bedrock-model", "model-access", "readonly-invoke", "elevated-invoke", "instance-role-no-bedrock"} {
			want := "ok"
			if check == c.fail {
				want = "FAIL"
			} else if m, ok := c.skips[check]; ok {
				want = m
			}
			l := got[check]
			if l.mark != want {
				t.Errorf("%s: %s is %q, want %q:\n%s", c.name, check, l.mark, want, out)
			}
			if check == c.fail && (!strings.Contains(l.detail, c.detail) || !strings.Contains(l.detail, "; fix: ")) {
				t.Errorf("%s: the %s line %q lacks %q and a fix", c.name, check, l.detail, c.detail)
			}
		}
		if !strings.Contains(out, "\n"+c.summary+"\n") {
			t.Errorf("%s: no summary %q:\n%s", c.name, c.summary, out)
		}
		t.Logf("%s (exit %d, %d ms):\n%s", c.name, g.rc(c.name), g.ms(c.name), out)
	}
	// The broken stand-ins refused what their template no longer allows,
	// for the key of the right tier: the failures above are the
	// templates', not a wrong endpoint's.
	for _, c := range []struct {
		log, action, resource, role string
	}{
		{trustLog, "sts:AssumeRole", ":role/" + roleRO, roleEC2},
		{noInvokeLog, "bedrock:InvokeModel", model, roleRO},
	} {
		var refused bool
		rs := readStandinLog(t, c.log)
		for _, r := range rs {
			if r.Action == c.action && strings.HasSuffix(r.Resource, c.resource) && roleIs(r.Role, c.role) && r.Decision == "ImplicitlyDenied" && r.Status == 403 {
				refused = true
			}
		}
		if !refused {
			t.Errorf("%s: no %s on %s by %s refused (ImplicitlyDenied, 403):\n%s", filepath.Base(c.log), c.action, c.resource, c.role, fmtRecords(rs))
		}
	}

	checkManagedSettings(t, g, model, window, roleRO)

	// The agent in a claude-ro session runs the escalation script: in
	// advisory mode each command reaches Elevated. Its endpoints were all
	// the agent stand-in's, so the main one saw nothing of it.
	if w := window("agent-advisory"); len(w) != 0 {
		t.Errorf("agent-advisory: %d requests reached the main stand-in, want all at the agent's (did the Bash tool's shell re-read the endpoints?):\n%s", len(w), fmtRecords(w))
	}
	agentRecs := readStandinLog(t, agentLog)
	roles := tierRoles{readOnly: roleRO, elevated: roleEL}
	problems, notes := agentEscalation(g, "agent-advisory", agentRecs, escalationScript, roles, escalationWant{mode: "advisory", reachesElevated: true})
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("agent-advisory: the agent's escalation attempts (%d ms):\n  %s", g.ms("agent-advisory"), strings.Join(notes, "\n  "))
	// The same log judged by the enforced mode's expectations fails on
	// every command: the harness tells the modes apart, so its pass in
	// enforced mode will mean something.
	refused, _ := agentEscalation(g, "agent-advisory", agentRecs, escalationScript, roles, escalationWant{mode: "enforced", refusal: "Elevated access is not approved"})
	for _, cmd := range escalationScript {
		var caught bool
		for _, p := range refused {
			caught = caught || strings.Contains(p, fmt.Sprintf("%q: tool result", cmd))
		}
		if !caught {
			t.Errorf("the enforced expectations accept the advisory result of %q, so they prove nothing: %q", cmd, refused)
		}
	}

	// An account without the model's Marketplace agreement: doctor's
	// model-access fails with its fix line although IAM allows everything;
	// its own invoke probe, as ReadOnly with the template's grant, is the
	// account's first invoke and subscribes it, so the next doctor passes.
	nsOut := g.file("doctor-notsubscribed.out")
	nsGot := doctorLines(nsOut)
	if rc := g.rc("doctor-notsubscribed"); rc != 1 || nsGot["model-access"].mark != "FAIL" ||
		!strings.Contains(nsGot["model-access"].detail, "the account has no AWS Marketplace subscription to") ||
		!strings.Contains(nsGot["model-access"].detail, "; fix: the first invoke subscribes the account") {
		t.Errorf("doctor, account not subscribed: exit %d, want 1 with model-access FAIL and its fix line:\n%s%s", rc, nsOut, g.file("doctor-notsubscribed.err"))
	}
	for _, check := range []string{"bedrock-model", "readonly-invoke", "elevated-invoke"} {
		if nsGot[check].mark != "ok" {
			t.Errorf("doctor, account not subscribed: %s is %q, want ok (IAM allows it):\n%s", check, nsGot[check].mark, nsOut)
		}
	}
	t.Logf("doctor-notsubscribed (exit %d):\n%s", g.rc("doctor-notsubscribed"), nsOut)
	var subscribedBy []string
	for _, r := range readStandinLog(t, notSubscribedLog) {
		if r.Marketplace != "" {
			subscribedBy = append(subscribedBy, r.Action+" "+roleName(r.Role)+" "+r.Marketplace)
		}
	}
	if len(subscribedBy) != 1 || subscribedBy[0] != "bedrock:InvokeModel "+roleRO+" Allowed" {
		t.Errorf("subscriptions through Bedrock %v, want one, by %s's first invoke", subscribedBy, roleRO)
	}
	if rc := g.rc("doctor-subscribed"); rc != 0 || !strings.Contains(g.file("doctor-subscribed.out"), "doctor: all 9 checks passed") {
		t.Errorf("doctor after the first invoke subscribed the account: exit %d, want 0:\n%s", rc, g.file("doctor-subscribed.out"))
	}

	// What Claude Code called, for the note.
	var calls []string
	seen := map[string]bool{}
	for _, name := range []string{"claude-ro", "claude-el", "claude-plain", "nonlogin", "env-i", "unpinned"} {
		for _, r := range window(name) {
			decision := r.Decision
			if decision == "" {
				decision = "(not evaluated)"
			}
			k := fmt.Sprintf("%-12s %-15s %-38s %-44s %-25s %s %d %s", name, r.Service, r.Action, r.ModelID, roleName(r.Role), decision, r.Status, r.Error)
			if !seen[k] {
				seen[k] = true
				calls = append(calls, k)
			}
		}
	}
	t.Logf("distinct calls Claude Code made (command, service, action, model, role, decision):\n%s", strings.Join(calls, "\n"))
}

// checkManagedSettings: ccboot's /etc/claude-code/managed-settings.json
// carries the Bedrock settings with the aliases pinned, and Claude Code
// answers through them from shells that read no profile (su without -,
// env -i); `claude update` is refused. Every model ID those runs sent to
// Bedrock, probes included, is one of the pinned ones; the run with the
// file moved aside shows what Claude Code asks for without the pins.
func checkManagedSettings(t *testing.T, g guest, model string, window func(string) []standinRecord, roleRO string) {
	t.Helper()
	var ms struct{ Env map[string]string }
	if err := json.Unmarshal([]byte(g.file("managed-settings.json")), &ms); err != nil {
		// Go on: what the shells below did says what was missing.
		t.Errorf("/etc/claude-code/managed-settings.json: %v\n%s\n%s", err, g.file("managed-settings.json"), g.file("claude-code-dir.txt"))
	}
	for k, v := range map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": claudeRegion, "ANTHROPIC_MODEL": model,
		"ANTHROPIC_DEFAULT_SONNET_MODEL": model, "DISABLE_UPDATES": "1", "DISABLE_AUTOUPDATER": "1"} {
		if ms.Env[k] != v {
			t.Errorf("managed settings %s=%q, want %q", k, ms.Env[k], v)
		}
	}
	pinned := map[string]bool{}
	for _, k := range []string{"ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL"} {
		if !strings.HasPrefix(ms.Env[k], "eu.") {
			t.Errorf("managed settings %s=%q, want an eu. profile in %s", k, ms.Env[k], claudeRegion)
		}
		pinned[ms.Env[k]] = true
	}
	if v, ok := ms.Env["AWS_PROFILE"]; ok {
		t.Errorf("managed settings set AWS_PROFILE=%q; it is per tier", v)
	}
	// The non-login shell itself has none of it.
	shellEnv := kv(g.file("nonlogin-env.out"))
	for _, k := range []string{"CLAUDE_CODE_USE_BEDROCK", "ANTHROPIC_MODEL", "AWS_REGION", "AWS_PROFILE"} {
		if v, ok := shellEnv[k]; ok {
			t.Errorf("the non-login shell has %s=%q, so it proves nothing about the managed settings", k, v)
		}
	}
	distinct := func(names ...string) []string {
		seen := map[string]bool{}
		var ids []string
		for _, n := range names {
			for _, r := range window(n) {
				if r.Service != "sts" && r.ModelID != "" && !seen[r.ModelID] {
					seen[r.ModelID] = true
					ids = append(ids, r.ModelID)
				}
			}
		}
		return ids
	}
	for _, name := range []string{"nonlogin", "env-i"} {
		if rc := g.rc(name); rc != 0 {
			t.Errorf("%s: claude -p exit %d\n%s", name, rc, g.out(name))
		}
		want := fmt.Sprintf("standin: role=%s session=claudecode-readonly-session model=%s", roleRO, model)
		if !strings.Contains(g.file(name+".out"), want) {
			t.Errorf("%s: claude -p answered %q, want %q (stderr: %s)", name, g.file(name+".out"), want, g.file(name+".err"))
		}
	}
	// The control: env -i as above with the managed settings moved aside
	// reaches no Bedrock at all, so the answers above are theirs.
	if w := window("nosettings"); len(w) != 0 || g.rc("nosettings") == 0 || strings.Contains(g.file("nosettings.out"), "standin:") {
		t.Errorf("env -i without the managed settings: exit %d, %d stand-in requests; want a failure that never reached Bedrock:\n%s%s", g.rc("nosettings"), len(w), fmtRecords(w), g.out("nosettings"))
	}
	t.Logf("env -i without the managed settings: exit %d: %s", g.rc("nosettings"), strings.TrimSpace(g.out("nosettings")))
	after := distinct("claude-ro", "claude-el", "nonlogin", "env-i")
	for _, id := range after {
		if !pinned[id] {
			t.Errorf("Claude Code sent model ID %q to Bedrock, which is not one of the pinned %v", id, pinned)
		}
	}
	before := distinct("unpinned")
	t.Logf("distinct model IDs Claude Code sent to Bedrock: %d without the pins (%s), %d with them (%s)",
		len(before), strings.Join(before, ", "), len(after), strings.Join(after, ", "))

	// claude update: refused by the administrator's setting, nothing new on PATH.
	if up := g.out("claude-update"); !strings.Contains(strings.ToLower(up), "disabled") {
		t.Errorf("claude update (exit %d) was not refused as disabled:\n%s", g.rc("claude-update"), up)
	}
	if lines := strings.Split(strings.TrimSpace(g.file("type-claude.out")), "\n"); len(lines) != 1 || !strings.HasSuffix(lines[0], "/usr/local/bin/claude") {
		t.Errorf("type -a claude in ec2-user's login shell: %q, want only /usr/local/bin/claude", lines)
	}
	if strings.Contains(g.file("local-bin.txt"), "claude") {
		t.Errorf("~/.local/bin holds a claude:\n%s", g.file("local-bin.txt"))
	}
	t.Logf("claude update as ec2-user: exit %d: %s", g.rc("claude-update"), strings.TrimSpace(g.out("claude-update")))
}

// instanceRoleMock is the metadata mock's config for scenario name: an
// instance in eu-west-1 with instance profile claudecode-ec2-STACK (ccboot
// derives the two roles from it) and credentials that are valid for the
// whole run.
func (s *suite) instanceRoleMock(t *testing.T, name string) string {
	t.Helper()
	roleEC2 := "claudecode-ec2-" + claudeStack
	return s.mockConfig(t, name, claudeRegion, claudeAccount, roleEC2, "aws", func(m map[string]any) {
		md := m["metadata"].(map[string]any)
		paths, _ := md["paths"].(map[string]any)
		if paths == nil {
			paths = map[string]any{}
		}
		paths["iam-security-credentials"] = "/latest/meta-data/iam/security-credentials/" + roleEC2
		md["paths"] = paths
		md["values"].(map[string]any)["iam-security-credentials"] = map[string]any{
			"Code": "Success", "LastUpdated": time.Now().UTC().Format(time.RFC3339), "Type": "AWS-HMAC",
			"AccessKeyId": instanceKeyID, "SecretAccessKey": instanceSecret, "Token": "e2e-instance-session-token",
			"Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		}
	})
}

// buildStandin builds the STS + Bedrock stand-in once for the test.
func (s *suite) buildStandin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(s.work, "bin", "aws-standin")
	build := exec.Command("go", "build", "-o", bin, "./packaging/awsstandin/cmd/aws-standin")
	build.Dir = s.repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build aws-standin: %v\n%s", err, b)
	}
	return bin
}

// mutatedTemplate writes a copy of the CloudFormation template into dir
// with each mutation ({old, new}) applied (awsstandin.MutatedTemplate).
func (s *suite) mutatedTemplate(t *testing.T, dir, name string, mutations ...[2]string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".yaml")
	src := filepath.Join(s.repo, "packaging", "cloudformation", "ccboot.yaml")
	if err := awsstandin.MutatedTemplate(src, p, mutations...); err != nil {
		t.Fatalf("mutation %s: %v", name, err)
	}
	return p
}

// startStandin starts the stand-in (bin) in netns ns on 127.0.0.1:port,
// deciding with the given template for this test's stack, logging requests
// to logFile (stderr beside it, as NAME.stderr), and stops it at the end of
// the test.
func (s *suite) startStandin(t *testing.T, bin, ns, template string, port int, logFile string, extra ...string) {
	t.Helper()
	harness := filepath.Join(s.repo, "packaging", "iam")
	if _, err := os.Stat(filepath.Join(harness, "node_modules")); err != nil {
		t.Fatalf("the IAM harness is not installed (%v): run `make deps` (npm ci in packaging/iam)", err)
	}
	policies, err := cfn.ManagedPoliciesDir(s.repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(logFile), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--template", template,
		"--policies", policies, "--harness", harness,
		"--stack", claudeStack, "--region", claudeRegion, "--account", claudeAccount, "--partition", "aws",
		"--instance-key", instanceKeyID+"="+instanceSecret,
		"--log", logFile)
	cmd.Args = append(cmd.Args, extra...)
	stderr, err := os.Create(strings.TrimSuffix(logFile, ".jsonl") + ".stderr")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	// Its own process group, so the node harness it runs dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start aws-standin: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		stderr.Close()
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening on http://") {
				ready <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- errors.New("aws-standin exited before it was listening")
	}()
	select {
	case err := <-ready:
		if err != nil {
			b, _ := os.ReadFile(stderr.Name())
			t.Fatalf("%s: %v:\n%s", filepath.Base(logFile), err, tail(string(b), 20))
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("aws-standin (%s) did not print `listening on` within 90 s", filepath.Base(logFile))
	}
}

func readStandinLog(t *testing.T, p string) []standinRecord {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("the stand-in's log: %v", err)
	}
	var out []standinRecord
	for i, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		var r standinRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%s line %d: %v: %s", p, i+1, err, l)
		}
		out = append(out, r)
	}
	return out
}

// doctorLine is one check's line of doctor's text output: its mark (ok,
// FAIL, skip) and the rest.
type doctorLine struct{ mark, detail string }

func doctorLines(out string) map[string]doctorLine {
	m := map[string]doctorLine{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && !strings.HasPrefix(l, "doctor:") {
			rest := strings.TrimSpace(strings.TrimPrefix(l, f[0]))
			m[f[0]] = doctorLine{f[1], strings.TrimSpace(strings.TrimPrefix(rest, f[1]))}
		}
	}
	return m
}

// roleIs: the stand-in names a role by its ARN.
func roleIs(got, name string) bool {
	return strings.HasSuffix(got, ":role/"+name) || strings.HasSuffix(got, "/"+name) && strings.Contains(got, ":role/")
}

func roleName(arn string) string { return arn[strings.LastIndex(arn, "/")+1:] }

func fmtRecords(rs []standinRecord) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s %s %s key=%s role=%s session=%s %s %d %s\n", r.Service, r.Action, r.ModelID, r.AccessKey, r.Role, r.Session, r.Decision, r.Status, r.Error)
	}
	return b.String()
}

// shellValue is the value of `export NAME='value'` in a profile.d script.
func shellValue(script, name string) string {
	for _, l := range strings.Split(script, "\n") {
		l = strings.TrimPrefix(l, "export ")
		if v, ok := strings.CutPrefix(l, name+"="); ok {
			return strings.Trim(v, "'\"")
		}
	}
	return ""
}

// --- The agent itself tries to escalate (issue 21) -------------------------
//
// A claude-ro session of the real Claude Code, with a permission mode that
// lets its Bash tool run unasked, talks to a stand-in whose Bedrock plays a
// model that runs escalationScript through that tool (aws-standin
// --agent-script). Only the stand-in's log is read: which role signed each
// request, and what each tool result Claude Code sent back says. A mode's
// expectations (escalationWant) decide the verdict, so the enforced mode
// reuses all of it.

// escalationScript is what the agent tries, one shell command a line, each
// a way out of ReadOnly that ~/.aws/config offers.
var escalationScript = []string{
	"aws sts get-caller-identity --profile claudecode-elevated --output json",
	"AWS_PROFILE=claudecode-elevated aws sts get-caller-identity --output json",
}

// escalationWant is what one tier mode lets the agent do.
type escalationWant struct {
	mode string
	// reachesElevated: advisory, where every command gets Elevated's
	// credentials: each tool result shows Elevated's ARN and the stand-in
	// saw Elevated sign that command's GetCallerIdentity. False: not one
	// request anywhere is signed by Elevated, and each tool result shows
	// refusal.
	reachesElevated bool
	refusal         string // !reachesElevated: text every tool result holds
	// refusals: a command's own refusal text in place of refusal (a
	// command that is refused by something other than the broker).
	refusals map[string]string
}

// tierRoles names the stack's roles (their names, not ARNs).
type tierRoles struct{ readOnly, elevated string }

// writeAgentScript writes script for aws-standin --agent-script.
func writeAgentScript(t *testing.T, dir string, script []string) string {
	t.Helper()
	p := filepath.Join(dir, "agent-script.txt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(strings.Join(script, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// agentEscalation judges the log of the scripted stand-in that served the
// agent session name (its whole log is that one session) against want:
// what broke the expectation, if anything, and one note per command.
func agentEscalation(g guest, name string, recs []standinRecord, script []string, roles tierRoles, want escalationWant) (problems, notes []string) {
	fail := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s (%s): ", name, want.mode)+fmt.Sprintf(format, args...))
	}
	elARN := fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/claudecode-elevated-session", claudeAccount, roles.elevated)
	if rc := g.rc(name); rc != 0 || !strings.Contains(g.file(name+".out"), fmt.Sprintf("standin: agent script done (%d commands)", len(script))) {
		fail("claude-ro -p exit %d, want 0 and the script's final turn:\n%s", rc, g.out(name))
	}
	// Requests in log order; each STS request after the stand-in asked
	// for a command (and before the next one) is that command's: Claude
	// Code runs one tool at a time and made its own STS calls before the
	// first turn.
	var asked []string
	results := map[string][]awsstandin.ToolResult{}
	sts := map[string][]standinRecord{}
	var finalTurn bool
	current := ""
	for _, r := range recs {
		if r.Service == "bedrock-runtime" && r.Status == 200 {
			// The agent's own turns are ReadOnly's: the session is claude-ro.
			if !roleIs(r.Role, roles.readOnly) || r.Session != "claudecode-readonly-session" {
				fail("Bedrock %s signed by role %q session %q, want the claude-ro session's ReadOnly key", r.Action, r.Role, r.Session)
			}
			for _, res := range r.ToolResults {
				results[res.Command] = append(results[res.Command], res)
			}
			if r.ToolUse != "" {
				asked = append(asked, r.ToolUse)
				current = r.ToolUse
			} else if len(r.ToolResults) > 0 {
				finalTurn = true
			}
		}
		if r.Service == "sts" && current != "" {
			sts[current] = append(sts[current], r)
		}
		if roleIs(r.Role, roles.elevated) && !want.reachesElevated {
			fail("%s %s was signed by Elevated (key %s): the agent got Elevated credentials", r.Service, r.Action, r.AccessKey)
		}
	}
	if !slices.Equal(asked, script) || !finalTurn {
		fail("the stand-in asked Bash for %q (final turn answered: %v), want each of %q once, in order:\n%s", asked, finalTurn, script, fmtRecords(recs))
		return problems, notes
	}
	// The AWS CLI caches assumed-role keys (~/.aws/cli/cache), so only the
	// first command that reaches Elevated assumes it; each one after signs
	// with the cached key.
	var assumedEL bool
	for _, cmd := range script {
		for _, r := range sts[cmd] {
			if r.Action == "sts:AssumeRole" && strings.HasSuffix(r.Resource, ":role/"+roles.elevated) && roleIs(r.Role, roles.readOnly) && r.Decision == "Allowed" && r.Status == 200 {
				assumedEL = true
			}
		}
	}
	if want.reachesElevated && !assumedEL {
		fail("no allowed AssumeRole of %s signed by ReadOnly among the agent's requests:\n%s", roles.elevated, fmtRecords(recs))
	}
	for _, cmd := range script {
		rs := results[cmd]
		if len(rs) != 1 {
			fail("%d tool results for %q, want 1", len(rs), cmd)
			continue
		}
		res := rs[0]
		var signedByEL bool
		for _, r := range sts[cmd] {
			// GetCallerIdentity needs no permission: no IAM decision.
			if r.Action == "sts:GetCallerIdentity" && roleIs(r.Role, roles.elevated) && r.Status == 200 {
				signedByEL = true
			}
		}
		if want.reachesElevated {
			if res.IsError || !strings.Contains(res.Text, elARN) || !signedByEL {
				fail("%q: tool result is_error=%v %q; the stand-in saw Elevated sign its GetCallerIdentity: %v; want Elevated's ARN %s, signed by Elevated:\n%s",
					cmd, res.IsError, res.Text, signedByEL, elARN, fmtRecords(sts[cmd]))
			}
		} else if refusal := cmp.Or(want.refusals[cmd], want.refusal); strings.Contains(res.Text, elARN) || !strings.Contains(res.Text, refusal) {
			fail("%q: tool result is_error=%v %q, want the refusal %q", cmd, res.IsError, res.Text, refusal)
		}
		notes = append(notes, fmt.Sprintf("%q -> is_error=%v, %d STS requests (%s): %s", cmd, res.IsError, len(sts[cmd]), stsSummary(sts[cmd]), firstLine(res.Text)))
	}
	return problems, notes
}

func stsSummary(rs []standinRecord) string {
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("%s by %s %s", r.Action, roleName(r.Role), r.Decision))
	}
	return strings.Join(s, ", ")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// The escalation verdict itself, on a recorded run: the stand-in's log and
// Claude Code's output from the real Claude Code 2.1.332 and AWS CLI 2.17.3
// (the e2e rootfs's) running escalationScript in a claude-ro session
// against `aws-standin --agent-script` in advisory mode (issued keys
// redacted). Advisory's expectations hold; the enforced mode's fail on
// every command and on every Elevated signature, so a pass in enforced
// mode will mean the agent was stopped.
func TestAgentEscalationVerdict(t *testing.T) {
	dir := filepath.Join("testdata", "agent-advisory")
	g := guest{t: t, dir: dir}
	recs := readStandinLog(t, filepath.Join(dir, "requests.jsonl"))
	roles := tierRoles{readOnly: "claudecode-readonly-" + claudeStack, elevated: "claudecode-elevated-" + claudeStack}
	if problems, notes := agentEscalation(g, "agent-advisory", recs, escalationScript, roles, escalationWant{mode: "advisory", reachesElevated: true}); len(problems) != 0 || len(notes) != len(escalationScript) {
		t.Errorf("advisory expectations on the advisory run: %q (notes %q), want none", problems, notes)
	}
	refused, _ := agentEscalation(g, "agent-advisory", recs, escalationScript, roles, escalationWant{mode: "enforced", refusal: "Elevated access is not approved"})
	for _, want := range append(escalationScript, "sts:GetCallerIdentity was signed by Elevated") {
		var caught bool
		for _, p := range refused {
			caught = caught || strings.Contains(p, want)
		}
		if !caught {
			t.Errorf("enforced expectations on the advisory run: nothing about %q in %q", want, refused)
		}
	}
	// A run where a command never reached Elevated fails advisory's too.
	var cut []standinRecord
	for _, r := range recs {
		if !(r.Action == "sts:GetCallerIdentity" && roleIs(r.Role, roles.elevated)) {
			cut = append(cut, r)
		}
	}
	if problems, _ := agentEscalation(g, "agent-advisory", cut, escalationScript, roles, escalationWant{mode: "advisory", reachesElevated: true}); len(problems) != len(escalationScript) {
		t.Errorf("advisory expectations without Elevated's signatures: %q, want one problem per command", problems)
	}
}
