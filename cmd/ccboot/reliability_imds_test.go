//go:build reliability

package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// imdsCase is one fault: what the run must end with and what the failed
// steps' one-line errors must say (the cause and the fix).
type imdsCase struct {
	name   string
	imds   func(t *testing.T) (endpoint string, f *aemmtest.Fault)
	failed []string // steps that must fail; nil: the run succeeds
	want   []string // substrings of each failed step's error
	not    []string // advice that would be wrong for this cause
	check  func(t *testing.T, f *aemmtest.Fault)
}

// TestReliabilityIMDSFaults drives the binary against loopback IMDS servers
// with one fault each. Every case is bounded in time, ends with the right
// exit code, names cause and fix in one line per failed step, shows in
// `ccboot status`, and leaves no half-written file.
func TestReliabilityIMDSFaults(t *testing.T) {
	t.Parallel()
	const timeout = 3 * time.Second
	with := func(mod func(f *aemmtest.Fault)) func(t *testing.T) (string, *aemmtest.Fault) {
		return func(t *testing.T) (string, *aemmtest.Fault) {
			f := aemmtest.NewFault(aemmtest.Default())
			mod(f)
			return f.Serve(t), f
		}
	}
	imdsSteps := []string{"profile-env", "claude-settings", "aws-config"}
	cases := []imdsCase{
		{name: "token PUT refused (403)", imds: with(func(f *aemmtest.Fault) { f.TokenStatus = http.StatusForbidden }),
			failed: imdsSteps, want: []string{"403", "ccboot needs IMDSv2", "HttpTokens"}},
		{name: "token PUT times out", imds: with(func(f *aemmtest.Fault) { f.TokenHang = 20 * time.Second }),
			failed: imdsSteps, want: []string{"gave up after 3s", "raise imds_timeout"}},
		{name: "500 for a while, then recovers", imds: with(func(f *aemmtest.Fault) { f.FailFor = 1200 * time.Millisecond })},
		{name: "responses slower than the deadline", imds: with(func(f *aemmtest.Fault) { f.Slow = 8 * time.Second }),
			failed: imdsSteps, want: []string{"gave up after 3s", "raise imds_timeout"}},
		{name: "iam/info 404: no instance profile", imds: with(func(f *aemmtest.Fault) { f.ProfileARN = "" }),
			failed: []string{"aws-config"}, want: []string{"no instance profile", "[aws] readonly_role_arn"}},
		{name: "malformed identity document", imds: with(func(f *aemmtest.Fault) { f.Identity = `{"region": "eu-west-1", "instanceId": [` }),
			failed: imdsSteps, want: []string{"malformed JSON", "[aws] region"}, not: []string{"raise imds_timeout"}},
		{name: "empty region", imds: with(func(f *aemmtest.Fault) {
			inst := aemmtest.Default()
			inst.Region = ""
			f.Identity = aemmtest.IdentityDocument(inst)
		}),
			failed: imdsSteps, want: []string{"empty region", "[aws] region"}},
		{name: "unknown partition", imds: with(func(f *aemmtest.Fault) { f.Partition = "aws-mars" }),
			failed: []string{"aws-config"}, want: []string{`invalid partition "aws-mars"`, "readonly_role_arn"}},
		{name: "instance profile off the naming convention, no ARNs configured", imds: with(func(f *aemmtest.Fault) {
			f.ProfileARN = "arn:aws:iam::111122223333:instance-profile/web-server"
		}), failed: []string{"aws-config"}, want: []string{"web-server", "naming convention", "[aws] readonly_role_arn"}},
		{name: "down for the whole deadline", imds: func(t *testing.T) (string, *aemmtest.Fault) {
			srv := httptest.NewServer(http.NotFoundHandler())
			srv.Close() // nothing listens there now
			return srv.URL, nil
		}, failed: imdsSteps, want: []string{"connection refused", "gave up after 3s", "reachable", "raise imds_timeout"}},
		{name: "IMDSv1 only: refuses, no fallback", imds: with(func(f *aemmtest.Fault) { f.NoToken = true }),
			failed: imdsSteps, want: []string{"404", "ccboot needs IMDSv2"},
			check: func(t *testing.T, f *aemmtest.Fault) {
				if n := f.Tokenless(); n > 0 {
					t.Errorf("%d metadata GETs without a token: ccboot fell back to IMDSv1", n)
				}
			}},
	}
	var passed atomic.Int32
	t.Cleanup(func() { figure(t, "imds-faults", int(passed.Load()), len(cases)+1) })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := newRoot(t)
			endpoint, srv := tc.imds(t)
			flags := []string{"--root", root, "--imds-endpoint", endpoint, "--set", "ccboot.imds_timeout=" + timeout.String()}
			r := runBin(t, ccbootBin, nil, append([]string{"run"}, flags...)...)
			// Bounded: the deadline, one backoff step and the steps' own work.
			if r.took > timeout+10*time.Second {
				t.Errorf("run took %s with imds_timeout %s", r.took, timeout)
			}
			wantCode := 0
			if len(tc.failed) > 0 {
				wantCode = 1
			}
			if r.code != wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, wantCode, r.stdout, r.stderr)
			}
			if l := leftovers(t, root); len(l) > 0 {
				t.Errorf("left behind: %v", l)
			}
			st := runBin(t, ccbootBin, nil, append([]string{"status"}, flags...)...)
			if st.code != wantCode {
				t.Errorf("status exit %d, want %d\n%s", st.code, wantCode, st.stdout)
			}
			for _, step := range tc.failed {
				line := stepLine(st.stdout, step)
				if !strings.HasPrefix(line, step+" ") || !strings.Contains(line, " failed ") {
					t.Errorf("status has no failed line for %s:\n%s", step, st.stdout)
					continue
				}
				for _, w := range tc.want {
					if !strings.Contains(line, w) {
						t.Errorf("%s error lacks %q:\n%s", step, w, line)
					}
				}
				for _, w := range tc.not {
					if strings.Contains(line, w) {
						t.Errorf("%s error gives advice that cannot help (%q):\n%s", step, w, line)
					}
				}
			}
			halfWritten := map[string]string{"aws-config": "home/ec2-user/.aws/config", "profile-env": "etc/profile.d/claude-bedrock.sh", "claude-settings": "etc/claude-code/managed-settings.json"}
			for _, step := range tc.failed {
				if _, err := os.Stat(filepath.Join(root, halfWritten[step])); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s failed but %s exists", step, halfWritten[step])
				}
			}
			// Steps that need no metadata still converged.
			rep := readState(t, root)
			for _, name := range []string{"swap", "aliases", "docker-group"} {
				if s, _ := rep.Step(name); !s.Result.Succeeded() {
					t.Errorf("%s ended %s: an IMDS fault must not stop steps that do not need it", name, s.Result)
				}
			}
			if tc.check != nil {
				tc.check(t, srv)
			}
			if !t.Failed() {
				passed.Add(1)
			}
		})
	}
	t.Run("instance ID changes between runs", func(t *testing.T) {
		t.Parallel()
		root := newRoot(t)
		a := aemmtest.Default()
		b := aemmtest.Default()
		b.InstanceID = "i-0fedcba9876543210"
		flagsA := []string{"--root", root, "--imds-endpoint", aemmtest.Start(t, a)}
		flagsB := []string{"--root", root, "--imds-endpoint", aemmtest.Start(t, b)}
		if r := runBin(t, ccbootBin, nil, append([]string{"run"}, flagsA...)...); r.code != 0 {
			t.Fatalf("run on A: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// Drift that a run on the same instance trusts away...
		profile := filepath.Join(root, "etc/profile.d/claude-bedrock.sh")
		if err := os.WriteFile(profile, []byte("export ANTHROPIC_MODEL=tampered\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := runBin(t, ccbootBin, nil, append([]string{"run"}, flagsA...)...); r.code != 0 || !strings.Contains(r.stdout, "converged earlier on this instance") {
			t.Fatalf("second run on A should trust A's recorded success: %d\n%s", r.code, r.stdout)
		}
		// ...is found and fixed once the image boots as a new instance.
		r := runBin(t, ccbootBin, nil, append([]string{"run"}, flagsB...)...)
		if r.code != 0 {
			t.Fatalf("run on B: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if strings.Contains(r.stdout, "converged earlier") {
			t.Errorf("run on B trusted A's recorded results:\n%s", r.stdout)
		}
		if got, _ := os.ReadFile(profile); strings.Contains(string(got), "tampered") {
			t.Errorf("run on B did not re-check profile-env: %q", got)
		}
		st := runBin(t, ccbootBin, nil, append([]string{"status"}, flagsB...)...)
		if st.code != 0 || !strings.Contains(st.stdout, "on instance "+b.InstanceID) {
			t.Errorf("status does not show instance B: %d\n%s", st.code, st.stdout)
		}
		if !t.Failed() {
			passed.Add(1)
		}
	})
}

// stepLine is the line of status text for step.
func stepLine(status, step string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, step+" ") {
			return l
		}
	}
	return ""
}

func readState(t *testing.T, root string) *bootstrap.Report {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, bootstrap.StatePath))
	if err != nil {
		t.Fatal(err)
	}
	var r bootstrap.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}
