package bootstrap

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap/metadata"
)

func TestWaitConditionSignalledOncePerInstance(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []waitConditionSignal
	var contentTypes []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var sig waitConditionSignal
		if r.Method != http.MethodPut || json.Unmarshal(b, &sig) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		bodies = append(bodies, sig)
		contentTypes = append(contentTypes, r.Header.Get("Content-Type"))
		mu.Unlock()
	}))
	defer srv.Close()

	root := t.TempDir()
	failing := &fakeStep{name: "a", applyErr: errTest("boom")}
	open := func(steps ...Step) *Session {
		s, err := Open(Options{Root: root, Steps: steps, Version: "test",
			Overrides: map[string]string{"ccboot.wait_condition_url": srv.URL + "/signal?X-Amz-Signature=abc"},
			Meta:      metadata.Static{InstanceIDValue: "i-0123456789abcdef0"}})
		if err != nil {
			t.Fatal(err)
		}
		s.Env.Log = zap.NewNop()
		return s
	}
	s := open(failing)
	r, err := s.Converge(context.Background(), ModeRun, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SignalWaitCondition(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	s.Close()
	mu.Lock()
	if len(bodies) != 1 || bodies[0].Status != "FAILURE" || bodies[0].Reason != "a: boom" || bodies[0].UniqueID != "i-0123456789abcdef0" || contentTypes[0] != "" {
		t.Fatalf("signal = %+v (Content-Type %q), want one FAILURE naming the step", bodies, contentTypes)
	}
	mu.Unlock()

	// A later boot's run on the same instance does not signal again.
	s = open(&fakeStep{name: "a"})
	defer s.Close()
	r, err = s.Converge(context.Background(), ModeRepair, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SignalWaitCondition(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("signalled %d times for one instance", len(bodies))
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

// Only https, or plain http to a literal loopback IP; the host is parsed,
// so names that merely look like loopback are refused before any lookup.
func TestCheckWaitConditionURL(t *testing.T) {
	t.Parallel()
	good := []string{
		"https://cloudformation-waitcondition-eu-west-1.s3.eu-west-1.amazonaws.com/arn%3Aaws/h?X-Amz-Signature=ab",
		"http://127.0.0.1:8080/wait", "http://127.1.2.3/wait", "http://[::1]:9/wait",
	}
	bad := map[string]string{
		"http://127.attacker.example/x":          "loopback IP",
		"http://localhost:x@attacker.example/":   "user@",
		"http://localhost:8080/wait":             "loopback IP",
		"http://127.0.0.1.attacker.example/":     "loopback IP",
		"http://2130706433/":                     "loopback IP",
		"http://0x7f.0.0.1/":                     "loopback IP",
		"http://10.0.0.1/":                       "loopback IP",
		"https://user:pw@example.com/":           "user@",
		"http://[::1%25lo]/":                     "loopback IP",
		"ftp://127.0.0.1/":                       "https://",
		"https:///no-host":                       "https://",
		"127.0.0.1:80/wait":                      "https://",
		"http://127.0.0.1@attacker.example/wait": "user@",
	}
	for _, u := range good {
		if err := CheckWaitConditionURL(u); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for u, want := range bad {
		err := CheckWaitConditionURL(u)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want one mentioning %q", u, err, want)
		}
	}
}

// A 3xx is an answer, not a direction: the pre-signed URL and the body are
// never sent where a redirect points, and a redirect is not retried.
func TestWaitConditionDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var elsewhere, asked atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer target.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked.Add(1)
			http.Redirect(w, r, target.URL+"/stolen"+"?"+r.URL.RawQuery, code)
		}))
		s := waitSession(t, srv.URL+"/signal?X-Amz-Signature=abc")
		r := Report{InstanceID: "i-0123456789abcdef0", Complete: true}
		start := time.Now()
		err := s.SignalWaitCondition(context.Background(), &r)
		s.Close()
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), "redirect") {
			t.Errorf("%d: err = %v, want a refusal naming the redirect", code, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%d: took %s: a redirect must not be retried", code, time.Since(start))
		}
	}
	if elsewhere.Load() != 0 || asked.Load() != 4 {
		t.Fatalf("redirect target got %d requests, the URL %d; want 0 and one per code", elsewhere.Load(), asked.Load())
	}
}

// The reason goes to CloudFormation stack events: one line, escaped, capped.
func TestWaitConditionReasonIsCappedAndEscaped(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got waitConditionSignal
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		_ = json.Unmarshal(b, &got)
	}))
	defer srv.Close()
	s := waitSession(t, srv.URL+"/signal")
	defer s.Close()
	long := "line 3: \x1b]0;title\x07\nsecond line " + strings.Repeat("é", 400)
	r := Report{InstanceID: "i-0123456789abcdef0", Steps: []StepReport{{Name: "aws-config", Result: ResultFailed, Error: long}}}
	if err := s.SignalWaitCondition(context.Background(), &r); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Status != "FAILURE" || len(got.Reason) > maxReasonLen || !strings.HasPrefix(got.Reason, "aws-config: line 3: ") || !utf8.ValidString(got.Reason) {
		t.Fatalf("reason %q (%d bytes): want the step named, valid UTF-8, at most %d bytes", got.Reason, len(got.Reason), maxReasonLen)
	}
	if strings.ContainsAny(got.Reason, "\x1b\x07\n") {
		t.Fatalf("reason %q carries control characters", got.Reason)
	}
}

func waitSession(t *testing.T, url string) *Session {
	t.Helper()
	s, err := Open(Options{Root: t.TempDir(), Version: "test",
		Overrides: map[string]string{"ccboot.wait_condition_url": url},
		Meta:      metadata.Static{InstanceIDValue: "i-0123456789abcdef0"}})
	if err != nil {
		t.Fatal(err)
	}
	s.Env.Log = zap.NewNop()
	return s
}
