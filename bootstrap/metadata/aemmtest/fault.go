package aemmtest

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault is a loopback IMDSv2 for the faults AEMM cannot play: a refused or
// hanging token PUT, 500s that stop after a while, answers slower than the
// deadline, a malformed identity document, IMDSv1 only. It answers the three
// paths ccboot reads and counts what it is asked. Set the fields before
// Serve; the zero fault answers like the Instance given to NewFault.
type Fault struct {
	TokenStatus int           // answer the token PUT with this status
	TokenHang   time.Duration // hold the token PUT this long, then 503
	NoToken     bool          // IMDSv1 only: no token endpoint, GETs need no token
	FailFirst   int           // answer this many GETs 500 before recovering
	FailFor     time.Duration // answer GETs 500 for this long after the first
	Slow        time.Duration // hold every GET this long

	Identity   string // body of the identity document
	Partition  string // body of services/partition
	ProfileARN string // "" answers iam/info 404 (no instance profile)

	mu        sync.Mutex
	firstGet  time.Time
	gets      int
	requests  map[string]int
	served    atomic.Int32
	tokenless atomic.Int32
}

// NewFault answers like inst until a fault field is set.
func NewFault(inst Instance) *Fault {
	return &Fault{Identity: IdentityDocument(inst), Partition: inst.Partition, ProfileARN: inst.ProfileARN}
}

// IdentityDocument is inst's instance-identity document, as IMDS writes it.
func IdentityDocument(inst Instance) string {
	b, _ := json.Marshal(map[string]string{"region": inst.Region, "accountId": inst.Account, "instanceId": inst.InstanceID, "availabilityZone": inst.AZ})
	return string(b)
}

// Serve starts the server on loopback for the test's lifetime and returns
// its URL.
func (f *Fault) Serve(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

// Requests counts the requests so far by "METHOD /path".
func (f *Fault) Requests() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.requests)
}

// Served is how many GETs were answered 200.
func (f *Fault) Served() int { return int(f.served.Load()) }

// Tokenless is how many GETs came without a token (an IMDSv1 fallback).
func (f *Fault) Tokenless() int { return int(f.tokenless.Load()) }

func (f *Fault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.requests == nil {
		f.requests = map[string]int{}
	}
	f.requests[r.Method+" "+r.URL.Path]++
	f.mu.Unlock()
	if r.URL.Path == "/latest/api/token" {
		f.token(w, r)
		return
	}
	if r.Header.Get("X-Aws-Ec2-Metadata-Token") == "" {
		f.tokenless.Add(1)
	}
	if !f.NoToken && r.Header.Get("X-Aws-Ec2-Metadata-Token") != "TOKEN" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	if f.firstGet.IsZero() {
		f.firstGet = time.Now()
	}
	f.gets++
	failing := f.gets <= f.FailFirst || time.Since(f.firstGet) < f.FailFor
	f.mu.Unlock()
	if failing {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if f.Slow > 0 {
		select {
		case <-time.After(f.Slow):
		case <-r.Context().Done():
			return
		}
	}
	var body string
	switch r.URL.Path {
	case "/latest/dynamic/instance-identity/document":
		body = f.Identity
	case "/latest/meta-data/services/partition":
		body = f.Partition
	case "/latest/meta-data/iam/info":
		if f.ProfileARN == "" {
			http.NotFound(w, r)
			return
		}
		b, _ := json.Marshal(map[string]string{"Code": "Success", "LastUpdated": "2026-11-27T00:00:00Z", "InstanceProfileArn": f.ProfileARN, "InstanceProfileId": "AIPAEXAMPLE"})
		body = string(b)
	default:
		http.NotFound(w, r)
		return
	}
	f.served.Add(1)
	w.Write([]byte(body))
}

func (f *Fault) token(w http.ResponseWriter, r *http.Request) {
	switch {
	case f.NoToken:
		http.NotFound(w, r)
	case f.TokenHang > 0:
		select {
		case <-time.After(f.TokenHang):
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	case f.TokenStatus != 0:
		w.WriteHeader(f.TokenStatus)
	case r.Method != http.MethodPut:
		w.WriteHeader(http.StatusMethodNotAllowed)
	default:
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "21600")
		w.Write([]byte("TOKEN"))
	}
}
