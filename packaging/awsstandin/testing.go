package awsstandin

import (
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// MutatedTemplate writes to dst a copy of the template src with each
// mutation ({old, new}) applied. Each old text must be in src exactly once,
// so a template change cannot silently turn a broken link into an intact
// one.
func MutatedTemplate(src, dst string, mutations ...[2]string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	text := string(b)
	for _, m := range mutations {
		if strings.Count(text, m[0]) != 1 {
			return fmt.Errorf("mutation: %q is not in %s exactly once", m[0], src)
		}
		text = strings.Replace(text, m[0], m[1], 1)
	}
	return os.WriteFile(dst, []byte(text), 0o644)
}

// Serve starts a stand-in on a loopback httptest server for one test and
// stops both (the node harness with it) when the test ends.
func Serve(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, ts.URL
}
