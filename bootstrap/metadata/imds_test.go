package metadata_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
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

// fault is a loopback IMDSv2 answering like aemmtest.Default(), changed by mod.
func fault(mod func(f *aemmtest.Fault)) *aemmtest.Fault {
	f := aemmtest.NewFault(aemmtest.Default())
	if mod != nil {
		mod(f)
	}
	return f
}

func TestIMDSFetchesEachValueOnce(t *testing.T) {
	t.Parallel()
	f := fault(nil)
	m := metadata.NewIMDS(f.Serve(t), 5*time.Second, nil)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		m.Region(ctx)
		m.AccountID(ctx)
		m.InstanceID(ctx)
		m.Partition(ctx)
	}
	if r := f.Requests(); r["PUT /latest/api/token"] != 1 || r["GET /latest/dynamic/instance-identity/document"] != 1 || r["GET /latest/meta-data/services/partition"] != 1 {
		t.Fatalf("requests = %v; want one token and one request per value", r)
	}
}

func TestIMDSRecoversFromTransientErrors(t *testing.T) {
	t.Parallel()
	f := fault(func(f *aemmtest.Fault) { f.FailFirst = 3 })
	m := metadata.NewIMDS(f.Serve(t), 20*time.Second, nil)
	r, err := m.Region(context.Background())
	if err != nil || r != "eu-west-1" {
		t.Fatalf("after 3 errors: %q %v", r, err)
	}
}

func TestIMDSFaultsGiveBoundedClearErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		f        *aemmtest.Fault
		deadline time.Duration
		get      func(*metadata.IMDS) (string, error)
		want     string
	}{
		{"IMDSv1 only: refuses, no fallback", fault(func(f *aemmtest.Fault) { f.NoToken = true }), 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "IMDSv2"},
		{"token forbidden", fault(func(f *aemmtest.Fault) { f.TokenStatus = http.StatusForbidden }), 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "IMDSv2"},
		{"always 500", fault(func(f *aemmtest.Fault) { f.FailFirst = 1 << 30 }), 2 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "gave up after 2s"},
		{"slow beyond deadline", fault(func(f *aemmtest.Fault) { f.Slow = 4 * time.Second }), 2 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "gave up"},
		{"malformed identity", fault(func(f *aemmtest.Fault) { f.Identity = `{"region": [` }), 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "malformed JSON"},
		{"empty region", fault(func(f *aemmtest.Fault) {
			f.Identity = `{"region":"","accountId":"111122223333","instanceId":"i-0123456789abcdef0"}`
		}), 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Region(context.Background()) }, "empty region"},
		{"unknown partition", fault(func(f *aemmtest.Fault) { f.Partition = "aws-mars" }), 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.Partition(context.Background()) }, "invalid partition \"aws-mars\""},
		{"no profile", fault(func(f *aemmtest.Fault) { f.ProfileARN = "" }), 3 * time.Second, func(m *metadata.IMDS) (string, error) { return m.InstanceProfileARN(context.Background()) }, "no instance profile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := metadata.NewIMDS(tc.f.Serve(t), tc.deadline, nil)
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
