//go:build reliability

package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/doctor"
	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
)

// doctorMemoryLimit is the address space doctor runs in (prlimit --as) and
// doctorMaxRSS the resident memory it may reach: a doctor that reads
// /dev/zero dies at the first, a bounded one stays far below the second.
const (
	doctorMemoryLimit = 1 << 30
	doctorMaxRSS      = 64 << 20 // doctor itself peaks near 18 MiB
)

// TestReliabilityDoctorHostileConfig is issue 19 finding 1: the user (the
// owner of the home) edits ~/.aws/config so that, on the old code, root's
// SDK ran a program of theirs, sent a root-only file to a listener of
// theirs, steered root's signed STS and IMDS calls to it, or read
// /dev/zero until it ran out of memory. Each variant is run through the
// built binary as root (--root, AWS's metadata mock, the loopback
// STS/Bedrock fake); each must leave no marker of the payload program, no
// connection on the user's listener, memory bounded, and aws-config-file
// FAIL naming a line of the payload.
func TestReliabilityDoctorHostileConfig(t *testing.T) {
	root, flags := bootstrappedRoot(t)
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	home := filepath.Join(root, "home/ec2-user")
	cfgPath := filepath.Join(home, ".aws/config")
	written, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	// The user's listener: every connection is counted, none answered.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var connections atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			connections.Add(1)
			c.Close()
		}
	}()
	listener := "http://" + l.Addr().String()

	// A root-only file standing in for /etc/shadow, outside the home.
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte("root:$6$SECRET-HASH:20000:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The payload program: a run leaves a marker; it also prints the
	// instance key as credentials, so a run would look like a working chain.
	marker := filepath.Join(home, "ran-as-root")
	script := filepath.Join(home, "x.sh")
	creds := `{"Version":1,"AccessKeyId":"` + doctortest.AEMMAccessKey + `","SecretAccessKey":"x"}`
	if err := os.WriteFile(script, []byte("#!/bin/sh\nid > "+marker+"\necho '"+creds+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(script, 1000, 1000); err != nil {
		t.Fatal(err)
	}

	const ro = "profile claudecode-readonly"
	services := "\n[services mine]\nsts =\n  endpoint_url = " + listener + "\n"
	type variant struct {
		name string
		// in: lines added at the end of [profile claudecode-readonly];
		// tail: text appended to the file; bad: the first and the last
		// payload line, one of which (or one between) the check must name.
		in, tail, first, bad string
		crlf                 bool
		// shell: settings added to doctorShell's.
		shell []string
	}
	// The SDK prefers a [services] entry of the shared config to the global
	// AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_STS to both): with only the
	// global one naming the fake, a doctor that read the user's file would
	// send its STS calls to the user's listener.
	globalEndpoint := []string{"AWS_ENDPOINT_URL_STS=", "AWS_ENDPOINT_URL=" + fake.URL}
	variants := []variant{
		{name: "indented key after a value", in: "output = json\n  credential_process = " + script + "\n  credential_source =\n",
			first: "output = json", bad: "  credential_source ="},
		{name: "two spaces in the section header", tail: "\n[profile  claudecode-readonly]\ncredential_process = " + script + "\n",
			first: "[profile  claudecode-readonly]", bad: "credential_process = " + script},
		{name: "tab in the section header", tail: "\n[profile\tclaudecode-readonly]\ncredential_process = " + script + "\n",
			first: "[profile\tclaudecode-readonly]", bad: "credential_process = " + script},
		{name: "backslash continuation", in: "output = json \\\ncredential_process = " + script + "\n",
			first: "output = json \\", bad: "credential_process = " + script},
		{name: "CRLF plus indentation", in: "output = json\n  credential_process = " + script + "\n", crlf: true,
			first: "output = json", bad: "  credential_process = " + script},
		{name: "services and endpoint_url", in: "services = mine\n", tail: services, shell: globalEndpoint,
			first: "services = mine", bad: "services = mine"},
		{name: "ec2_metadata_service_endpoint", in: "ec2_metadata_service_endpoint = " + listener + "\n",
			first: "ec2_metadata_service_endpoint", bad: "ec2_metadata_service_endpoint"},
		{name: "credential_process", in: "credential_process = " + script + "\n",
			first: "credential_process", bad: "credential_process"},
		// services first: an indented line after the empty credential_source
		// would be a sub-key of it for the SDK.
		{name: "web_identity_token_file", in: "services = mine\noutput = json\n  web_identity_token_file = " + secret + "\n  credential_source =\n", tail: services, shell: globalEndpoint,
			first: "services = mine", bad: "  credential_source ="},
		{name: "/dev/zero", in: "output = json\n  web_identity_token_file = /dev/zero\n  credential_source =\n",
			first: "output = json", bad: "  credential_source ="},
	}
	passed := 0
	for _, v := range variants {
		ok := t.Run(v.name, func(t *testing.T) {
			_ = os.Remove(marker)
			cfg := string(written)
			if v.in != "" {
				cfg = insertInSection(t, cfg, ro, v.in)
			}
			cfg += v.tail
			from, to := lineOf(t, cfg, v.first), lineOf(t, cfg, v.bad)
			if v.crlf {
				cfg = strings.ReplaceAll(cfg, "\n", "\r\n")
			}
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			before := connections.Load()
			r, maxRSS := doctorBounded(t, append(doctorShell(t, fake.URL), v.shell...), append([]string{"doctor"}, flags...)...)
			if out, err := os.ReadFile(marker); err == nil {
				t.Errorf("the user's program ran as root: %s", out)
			}
			if n := connections.Load() - before; n != 0 {
				t.Errorf("%d connection(s) reached the user's listener", n)
			}
			t.Logf("exit %d, max RSS %d MiB", r.code, maxRSS>>20)
			if maxRSS > doctorMaxRSS || r.code != 1 {
				t.Errorf("exit %d, max RSS %d MiB (limit %d MiB); want exit 1 within it\n%s", r.code, maxRSS>>20, doctorMaxRSS>>20, r.stderr)
			}
			line := doctorLine(r.stdout, doctor.AWSConfigFile)
			if !strings.HasPrefix(line, "FAIL") || !namesLine(line, from, to) {
				t.Errorf("aws-config-file %q; want FAIL naming a line in %d..%d", line, from, to)
			}
			for _, check := range []string{doctor.ReadOnlyProfile, doctor.ElevatedProfile} {
				if l := doctorLine(r.stdout, check); !strings.HasPrefix(l, "ok") {
					t.Errorf("%s %q: want ok through ccboot's own chain", check, l)
				}
			}
			if t.Failed() {
				t.Logf("~/.aws/config:\n%s\ndoctor:\n%s%s", cfg, r.stdout, r.stderr)
			}
		})
		if ok {
			passed++
		}
	}
	if err := os.WriteFile(cfgPath, written, 0o600); err != nil {
		t.Fatal(err)
	}
	figure(t, "doctor-hostile-config", passed, len(variants))
}

// lineOf is the 1-based number of the first line of cfg that starts with
// prefix.
func lineOf(t *testing.T, cfg, prefix string) int {
	t.Helper()
	for i, l := range strings.Split(cfg, "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("no line %q in:\n%s", prefix, cfg)
	return 0
}

// namesLine reports whether detail names "line N" for an N in from..to.
func namesLine(detail string, from, to int) bool {
	_, rest, ok := strings.Cut(detail, "line ")
	if !ok {
		return false
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	n, err := strconv.Atoi(rest[:end])
	return err == nil && n >= from && n <= to
}

// doctorBounded runs the binary like ccbootEnv, within doctorMemoryLimit
// of address space and a minute, and returns its peak resident memory.
func doctorBounded(t *testing.T, env []string, args ...string) (result, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "prlimit", append([]string{"--as=" + strconv.Itoa(doctorMemoryLimit), "--", ccbootBin}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET="), env...)
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("prlimit ccboot %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Errorf("doctor did not finish within a minute")
	}
	var maxRSS int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss << 10 // KiB on Linux
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}, maxRSS
}
