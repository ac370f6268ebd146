package runner

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Fake is a Runner for tests: it records every command and answers with the
// first handler whose prefix matches the command line. Commands without a
// handler fail, so a test notices commands it did not expect.
type Fake struct {
	mu       sync.Mutex
	calls    []Cmd
	handlers []fakeHandler
}

type fakeHandler struct {
	prefix string
	fn     func(Cmd) (Result, error)
}

// On answers commands whose String() starts with prefix.
func (f *Fake) On(prefix string, fn func(Cmd) (Result, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers = append(f.handlers, fakeHandler{prefix, fn})
}

// OnOutput answers commands starting with prefix with stdout and exit 0.
func (f *Fake) OnOutput(prefix, stdout string) {
	f.On(prefix, func(Cmd) (Result, error) { return Result{Stdout: []byte(stdout)}, nil })
}

// OnExit answers commands starting with prefix with a non-zero exit.
func (f *Fake) OnExit(prefix string, code int, stderr string) {
	f.On(prefix, func(c Cmd) (Result, error) {
		return Result{ExitCode: code, Stderr: []byte(stderr)}, &ExitError{Cmd: c.String(), Code: code, Stderr: stderr}
	})
}

// Run records c and dispatches it.
func (f *Fake) Run(_ context.Context, c Cmd) (Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	handlers := append([]fakeHandler(nil), f.handlers...)
	f.mu.Unlock()
	line := c.String()
	for _, h := range handlers {
		if strings.HasPrefix(line, h.prefix) {
			return h.fn(c)
		}
	}
	return Result{ExitCode: 127}, fmt.Errorf("fake runner: unexpected command %q", line)
}

// Calls returns the command lines run so far.
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.calls))
	for i, c := range f.calls {
		out[i] = c.String()
	}
	return out
}

// CallsWithPrefix counts recorded commands starting with prefix.
func (f *Fake) CallsWithPrefix(prefix string) int {
	n := 0
	for _, l := range f.Calls() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}
