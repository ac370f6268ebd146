package main

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// The WaitConditionHandle's pre-signed URL is HTTPS. The binary is built as
// the release is (no bundled HTTP/2), so this proves the release can PUT its
// result over TLS to a loopback server it trusts through SSL_CERT_FILE, with
// the query string (the signature) intact, an empty Content-Type, once per
// instance.
func TestBlackboxWaitConditionOverHTTPS(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())

	type put struct {
		method, query, contentType, proto string
		body                              []byte
	}
	var (
		mu   sync.Mutex
		puts []put
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		puts = append(puts, put{r.Method, r.URL.RawQuery, strings.Join(r.Header.Values("Content-Type"), ","), r.Proto, body})
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	const query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=ab%2Fcd"
	url := srv.URL + "/arn%3Aaws%3Acloudformation/handle?" + query
	args := []string{"--root", root, "--imds-endpoint", imds, "--set", "ccboot.wait_condition_url=" + url}

	env := []string{"SSL_CERT_FILE=" + ca, "HTTPS_PROXY=", "https_proxy="}
	run := func(sub string) result { return ccbootEnv(t, env, append([]string{sub}, args...)...) }
	if r := run("run"); r.code != 0 {
		t.Fatalf("run exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := run("repair"); r.code != 0 {
		t.Fatalf("repair exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(puts) != 1 {
		t.Fatalf("%d requests reached the wait condition, want 1 (signalled once per instance)", len(puts))
	}
	p := puts[0]
	if p.method != http.MethodPut || p.query != query || p.contentType != "" || p.proto != "HTTP/1.1" {
		t.Errorf("got %s %s ?%s Content-Type %q; want PUT HTTP/1.1 ?%s and an empty Content-Type", p.method, p.proto, p.query, p.contentType, query)
	}
	var sig struct{ Status, Reason, UniqueId, Data string }
	if err := json.Unmarshal(p.body, &sig); err != nil {
		t.Fatalf("body %q: %v", p.body, err)
	}
	if sig.Status != "SUCCESS" || sig.UniqueId != "i-0123456789abcdef0" || sig.Reason == "" {
		t.Errorf("signal %+v, want SUCCESS for i-0123456789abcdef0 with a reason", sig)
	}
}
