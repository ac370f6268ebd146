package bootstrap

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

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
