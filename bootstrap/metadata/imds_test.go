package metadata_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/metadata"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

func TestIMDSAgainstAWSMetadataMock(t *testing.T) {
	t.Parallel()
	inst := aemmtest.Default()
	inst.Region, inst.AZ, inst.Partition, inst.Account = "cn-north-1", "cn-north-1a", "aws-cn", "444455556666"
	inst.ProfileARN = "arn:aws-cn:iam::444455556666:instance-profile/claudecode-ec2-prod"
	m := metadata.NewIMDS(aemmtest.Start(t, inst), 10*time.Second, nil)
	ctx := context.Background()
	for name, get := range map[string]func(context.Context) (string, error){
		inst.Region: m.Region, inst.Account: m.AccountID, inst.Partition: m.Partition, inst.InstanceID: m.InstanceID, inst.ProfileARN: m.InstanceProfileARN,
	} {
		got, err := get(ctx)
		if err != nil || got != name {
			t.Errorf("got %q, %v; want %q", got, err, name)
		}
	}
}

func TestIMDSNoInstanceProfileAtMetadataMock(t *testing.T) {
	t.Parallel()
	inst := aemmtest.Default()
	inst.ProfileARN = ""
	m := metadata.NewIMDS(aemmtest.Start(t, inst), 10*time.Second, nil)
	start := time.Now()
	_, err := m.InstanceProfileARN(context.Background())
	if !errors.Is(err, metadata.ErrNoInstanceProfile) {
		t.Fatalf("err = %v, want ErrNoInstanceProfile", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("a 404 was retried until the deadline")
	}
}

// fakeIMDS is an httptest IMDSv2 with switchable faults; it counts requests.
type fakeIMDS struct {
	mu        sync.Mutex
	failFirst int // GETs answered 500 before recovering
	noToken   bool
	tokenCode int
	slow      time.Duration
	identity  string
	partition string
	requests  map[string]int
	gets      atomic.Int32
}

func (f *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.requests == nil {
		f.requests = map[string]int{}
	}
	f.requests[r.Method+" "+r.URL.Path]++
	f.mu.Unlock()
	if r.URL.Path == "/latest/api/token" {
		switch {
		case f.noToken:
			http.NotFound(w, r)
		case f.tokenCode != 0:
			w.WriteHeader(f.tokenCode)
		case r.Method != http.MethodPut:
			w.WriteHeader(http.StatusMethodNotAllowed)
		default:
			w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
			w.Write([]byte("TOKEN"))
		}
		return
	}
	if !f.noToken && r.Header.Get("X-Aws-Ec2-Metadata-Token") != "TOKEN" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if n := f.gets.Add(1); int(n) <= f.failFirst {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	time.Sleep(f.slow)
	switch r.URL.Path {
	case "/latest/dynamic/instance-identity/document":
		w.Write([]byte(f.identity))
	case "/latest/meta-data/services/partition":
		w.Write([]byte(f.partition))
	default:
		http.NotFound(w, r)
	}
}

const goodIdentity = `{"region":"us-west-2","accountId":"111122223333","instanceId":"i-0123456789abcdef0","availabilityZone":"us-west-2a"}`

func serve(t *testing.T, f *fakeIMDS) string {
	t.Helper()
	if f.identity == "" {
		f.identity = goodIdentity
	}
	if f.partition == "" {
		f.partition = "aws"
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestIMDSFetchesEachValueOnce(t *testing.T) {
	t.Parallel()
	f := &fakeIMDS{}
	m := metadata.NewIMDS(serve(t, f), 5*time.Second, nil)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		m.Region(ctx)
		m.AccountID(ctx)
		m.InstanceID(ctx)
		m.Partition(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.requests["PUT /latest/api/token"] != 1 || f.requests["GET /latest/dynamic/instance-identity/document"] != 1 || f.requests["GET /latest/meta-data/services/partition"] != 1 {
		t.Fatalf("requests = %v; want one token and one request per value", f.requests)
	}
}

func TestIMDSRecoversFromTransientErrors(t *testing.T) {
	t.Parallel()
	f := &fakeIMDS{failFirst: 3}
	m := metadata.NewIMDS(serve(t, f), 20*time.Second, nil)
	r, err := m.Region(context.Background())
	if err != nil || r != "us-west-2" {
		t.Fatalf("after 3 errors: %q %v", r, err)
	}
}

func TestIMDSFaultsGiveBoundedClearErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		f        *fakeIMDS
		deadline time.Duration
		get      func(*metadata.IMDS) (string, error)
		want     string
	}{
		{"IMDSv1 only: refuses, no fallback", &fakeIMDS{noToken: true}, 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "IMDSv2"},
		{"token forbidden", &fakeIMDS{tokenCode: http.StatusForbidden}, 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "IMDSv2"},
		{"always 500", &fakeIMDS{failFirst: 1 << 30}, 2 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "gave up after 2s"},
		{"slow beyond deadline", &fakeIMDS{slow: 4 * time.Second}, 2 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "gave up"},
		{"malformed identity", &fakeIMDS{identity: `{"region": [`}, 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "malformed JSON"},
		{"empty region", &fakeIMDS{identity: `{"region":"","accountId":"111122223333","instanceId":"i-0123456789abcdef0"}`}, 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "empty region"},
		{"unknown partition", &fakeIMDS{partition: "aws-mars"}, 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Partition(context.Background()) }, "invalid partition \"aws-mars\""},
		{"no profile", &fakeIMDS{}, 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.InstanceProfileARN(context.Background()) }, "no instance profile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := metadata.NewIMDS(serve(t, tc.f), tc.deadline, nil)
			start := time.Now()
			v, err := tc.get(m)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("no error; got %q", v)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q; want one line mentioning %q", err, tc.want)
			}
			if took > tc.deadline+6*time.Second {
				t.Fatalf("took %s, deadline %s", took, tc.deadline)
			}
		})
	}
}

func TestIMDSDownForWholeDeadline(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	m := metadata.NewIMDS(url, 1500*time.Millisecond, nil)
	start := time.Now()
	_, err := m.InstanceID(context.Background())
	if err == nil || !strings.Contains(err.Error(), "reachable") {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took < time.Second || took > 8*time.Second {
		t.Fatalf("took %s for a 1.5s deadline", took)
	}
	// The failure is cached: the next value does not wait again.
	start = time.Now()
	m.Region(context.Background())
	if time.Since(start) > 200*time.Millisecond {
		t.Fatal("second value waited for the deadline again")
	}
}
