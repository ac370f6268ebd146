// Package aemmtest starts AWS's EC2 metadata mock (ec2-metadata-mock, AEMM)
// on a loopback port for tests, IMDSv2-only, with the values a test gives.
// It never binds anything but 127.0.0.1.
package aemmtest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Instance is what the mock answers.
type Instance struct {
	Region, AZ, Account, InstanceID, Partition string
	// ProfileARN "" removes iam/info (the instance has no profile).
	ProfileARN string
}

// Default is a consistent instance (AEMM's own defaults are not).
func Default() Instance {
	return Instance{Region: "eu-west-1", AZ: "eu-west-1b", Account: "111122223333", InstanceID: "i-0123456789abcdef0", Partition: "aws",
		ProfileARN: "arn:aws:iam::111122223333:instance-profile/claudecode-ec2-demo"}
}

// Binary finds ec2-metadata-mock: $AEMM, PATH, then $(go env GOPATH)/bin.
func Binary() (string, error) {
	if p := os.Getenv("AEMM"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("ec2-metadata-mock"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "ec2-metadata-mock")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("ec2-metadata-mock not found; install it: go install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0")
	}
	return p, nil
}

// ConfigJSON renders AEMM's -c config for inst.
func ConfigJSON(inst Instance) ([]byte, error) {
	values := map[string]any{
		"placement-region":            inst.Region,
		"placement-availability-zone": inst.AZ,
		"instance-id":                 inst.InstanceID,
		"services-partition":          inst.Partition,
	}
	paths := map[string]any{}
	if inst.ProfileARN != "" {
		values["iam-info"] = map[string]any{"Code": "Success", "LastUpdated": "2026-11-27T00:00:00Z", "InstanceProfileArn": inst.ProfileARN, "InstanceProfileId": "AIPAEXAMPLEPROFILEID"}
	} else {
		// Move iam/info somewhere nobody asks: /iam/info answers 404 like
		// on an instance without a profile.
		paths["iam-info"] = "/latest/meta-data/iam/no-profile-attached"
	}
	cfg := map[string]any{
		"metadata": map[string]any{"values": values, "paths": paths},
		"dynamic": map[string]any{"values": map[string]any{"instance-identity-document": map[string]any{
			"accountId": inst.Account, "region": inst.Region, "availabilityZone": inst.AZ, "instanceId": inst.InstanceID,
			"architecture": "arm64", "instanceType": "t4g.medium", "imageId": "ami-0123456789abcdef0", "version": "2017-09-30",
			"privateIp": "10.0.0.10", "pendingTime": "2026-11-27T00:00:00Z",
		}}},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

// Start runs the mock for the test's lifetime and returns its endpoint,
// e.g. http://127.0.0.1:41234. It skips the test when the binary is missing
// outside CI and fails it in CI (where .ci/run installs it).
func Start(t testing.TB, inst Instance) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	cfg, err := ConfigJSON(inst)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "aemm.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cmd := exec.Command(bin, "-n", "127.0.0.1", "-p", fmt.Sprint(port), "-I", "-c", cfgPath)
	cmd.Env = append(os.Environ(), "HOME="+dir) // it writes its config under $HOME
	logf, _ := os.Create(filepath.Join(dir, "aemm.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	mock := fmt.Sprintf("http://127.0.0.1:%d", port)
	endpoint := serialize(t, mock)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodPut, endpoint+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return endpoint
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "aemm.log"))
	t.Fatalf("metadata mock did not answer on %s: %s", mock, log)
	return ""
}

// serialize puts a loopback proxy in front of the mock that passes one
// request at a time. AEMM v1.13.0 keeps its IMDSv2 tokens in a map without a
// lock: a token PUT and a token check arriving together (parallel tests, or
// parallel ccboot runs against one mock) crash it with "concurrent map read
// and map write", and every later test sees "connection refused".
func serialize(t testing.TB, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		proxy.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
