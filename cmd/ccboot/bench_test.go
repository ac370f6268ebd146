package main

// Benchmarks of the in-process paths an operator pays for on every re-run
// (no-op repair, status, config load, each step's Check) over a converged
// root, and a test that counts IMDS requests per run at the metadata mock.
// packaging/bench/bench.sh runs them for BENCHMARKS.md:
//   go test ./cmd/ccboot -run '^$' -bench . -benchmem

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/steps"
)

// imdsCounter is a reverse proxy in front of the metadata mock that counts
// requests by method and path.
type imdsCounter struct {
	URL string
	mu  sync.Mutex
	n   map[string]int
}

func newIMDSCounter(tb testing.TB, target string) *imdsCounter {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	c := &imdsCounter{n: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.n[r.Method+" "+r.URL.Path]++
		c.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *imdsCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = map[string]int{}
}

// counts returns a copy, and the total.
func (c *imdsCounter) counts() (map[string]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, total := map[string]int{}, 0
	for k, v := range c.n {
		m[k] = v
		total += v
	}
	return m, total
}

func (c *imdsCounter) String() string {
	m, _ := c.counts()
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s x%d; ", k, m[k])
	}
	return b.String()
}

// TestMetadataCallsPerRun: a cold run asks IMDS for one token and each
// value once; a no-op repair asks no more than that.
func TestMetadataCallsPerRun(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := newIMDSCounter(t, aemmtest.Start(t, aemmtest.Default()))
	for _, mode := range []string{"run", "repair"} {
		imds.reset()
		if r := ccboot(t, mode, "--root", root, "--imds-endpoint", imds.URL); r.code != 0 {
			t.Fatalf("%s exit %d\n%s%s", mode, r.code, r.stdout, r.stderr)
		}
		m, total := imds.counts()
		t.Logf("%s: %d IMDS requests: %s", mode, total, imds)
		if m["PUT /latest/api/token"] != 1 {
			t.Errorf("%s: %d token requests, want 1", mode, m["PUT /latest/api/token"])
		}
		for k, n := range m {
			if n > 1 {
				t.Errorf("%s: %s asked %d times, want once", mode, k, n)
			}
		}
	}
}

// benchRoot is newRoot (blackbox_test.go) converged by one `ccboot run`
// through the binary: what an operator's repair meets on a bootstrapped
// machine.
func benchRoot(b *testing.B, imds string) string {
	b.Helper()
	root := newRoot(b)
	cmd := exec.Command(ccbootBin, "run", "--root", root, "--imds-endpoint", imds)
	cmd.Env = append(os.Environ(), "INVOCATION_ID=", "NOTIFY_SOCKET=")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ccboot run: %v\n%s", err, out)
	}
	return root
}

func openBench(b *testing.B, root, imds string, run runner.Runner) *bootstrap.Session {
	b.Helper()
	s, err := bootstrap.Open(bootstrap.Options{
		Root: root, Steps: steps.All(), Version: "bench", Stdout: io.Discard, Runner: run,
		Overrides: map[string]string{"ccboot.imds_endpoint": imds},
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkRepairNoop is `ccboot repair` on a converged root, in process:
// open (config, log), lock, every Check, state save. Reports processes
// spawned and IMDS requests per repair (goal: 0 and at most 1 token + 1 per value).
func BenchmarkRepairNoop(b *testing.B) {
	imds := newIMDSCounter(b, aemmtest.Start(b, aemmtest.Default()))
	root := benchRoot(b, imds.URL)
	imds.reset()
	run := &runner.Exec{}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s := openBench(b, root, imds.URL, run)
		rep, err := s.Converge(ctx, bootstrap.ModeRepair, nil, nil)
		s.Close()
		if err != nil || rep.Count(bootstrap.ResultChanged) != 0 || rep.Failed() {
			b.Fatalf("repair not a no-op: %v %s", err, bootstrap.Summary(&rep))
		}
	}
	_, total := imds.counts()
	b.ReportMetric(float64(run.Spawned())/float64(b.N), "procs/op")
	b.ReportMetric(float64(total)/float64(b.N), "imds-req/op")
}

// BenchmarkStatus is `ccboot status`: open and read the state file.
func BenchmarkStatus(b *testing.B) {
	imds := aemmtest.Start(b, aemmtest.Default())
	root := benchRoot(b, imds)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s := openBench(b, root, imds, &runner.Exec{})
		rep, err := s.Status(context.Background(), false)
		s.Close()
		if err != nil || rep == nil || !rep.Complete {
			b.Fatalf("status: %v %+v", err, rep)
		}
	}
}

// BenchmarkStatusCheck is `ccboot status --check`: every Check, no lock.
func BenchmarkStatusCheck(b *testing.B) {
	imds := aemmtest.Start(b, aemmtest.Default())
	root := benchRoot(b, imds)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s := openBench(b, root, imds, &runner.Exec{})
		rep, err := s.Status(context.Background(), true)
		s.Close()
		if err != nil || rep.Count(bootstrap.ResultDrift) != 0 {
			b.Fatalf("status --check: %v %+v", err, rep)
		}
	}
}

// BenchmarkLoadConfig parses a config that sets every key (defaults).
func BenchmarkLoadConfig(b *testing.B) {
	dir := b.TempDir()
	var conf strings.Builder
	for _, sec := range []string{"[ccboot]\nuser = ec2-user\n", "[packages]\ninstall = unzip, git, jq, nodejs, docker\n", "[claude-code]\nversion = 2.1.332\n", "[swap]\nsize = 512M\n", "[bedrock]\nmodel = us.anthropic.claude-sonnet-4-6\n", "[aws]\nreadonly_profile = claudecode-readonly\n", "[aliases]\nreadonly = claude-ro\n"} {
		conf.WriteString(sec)
	}
	if err := os.MkdirAll(filepath.Join(dir, "etc/ccboot"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/ccboot/ccboot.conf"), []byte(conf.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	sys := fsrootOpen(b, dir)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bootstrap.LoadConfig(sys, bootstrap.DefaultConfigPath, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheck times each step's Check on a converged root (live
// metadata answers are cached after the first call, as in a run).
func BenchmarkCheck(b *testing.B) {
	imds := aemmtest.Start(b, aemmtest.Default())
	root := benchRoot(b, imds)
	run := &runner.Exec{}
	s := openBench(b, root, imds, run)
	b.Cleanup(s.Close)
	ctx := context.Background()
	for _, st := range steps.All() {
		b.Run(st.Name(), func(b *testing.B) {
			before := run.Spawned()
			b.ReportAllocs()
			for b.Loop() {
				d, err := st.Check(ctx, s.Env)
				if err != nil || len(d.Changes) != 0 {
					b.Fatalf("%s: %v %v", st.Name(), err, d.Changes)
				}
			}
			b.ReportMetric(float64(run.Spawned()-before)/float64(b.N), "procs/op")
		})
	}
}

func fsrootOpen(b *testing.B, dir string) *fsroot.Tree {
	b.Helper()
	sys, err := fsroot.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sys.Close() })
	return sys
}
