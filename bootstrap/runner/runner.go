// Package runner runs external commands. Steps never call os/exec directly:
// they go through a Runner, so tests can substitute a Fake and benchmarks can
// count how many processes a run spawned.
package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// Cmd is one command to run.
type Cmd struct {
	Name  string
	Args  []string
	Env   []string // added to the inherited environment
	Stdin []byte
	// NoTerminal starts the command in a session of its own (setsid), so
	// it has no controlling terminal: a program run as another user
	// cannot open root's /dev/tty and push keystrokes into it (TIOCSTI).
	// Its stdin is /dev/null unless Stdin is set.
	NoTerminal bool
}

// String renders the command for logs and error messages.
func (c Cmd) String() string {
	return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " "))
}

// Result is what a finished command left behind.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Runner runs commands.
type Runner interface {
	Run(ctx context.Context, c Cmd) (Result, error)
}

// ExitError is returned when a command ran and exited non-zero.
type ExitError struct {
	Cmd    string
	Code   int
	Stderr string // last lines, for the message
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: exit status %d", e.Cmd, e.Code)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// Exec runs commands with os/exec.
type Exec struct {
	Log     *zap.Logger
	spawned atomic.Int64
}

// Spawned is the number of processes started so far.
func (e *Exec) Spawned() int64 { return e.spawned.Load() }

// Run starts c and waits for it.
func (e *Exec) Run(ctx context.Context, c Cmd) (Result, error) {
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.NoTerminal {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	// A killed parent must not leave a package manager holding its lock
	// longer than necessary: give children a moment after cancellation.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	e.spawned.Add(1)
	crashPoint("exec/before", c)
	err := cmd.Run()
	crashPoint("exec/after", c)
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if e.Log != nil {
		e.Log.Debug("command", zap.String("cmd", c.String()), zap.Duration("took", time.Since(start)), zap.Error(err))
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
		if ctx.Err() != nil {
			return res, fmt.Errorf("%s: %w", c.String(), ctx.Err())
		}
		return res, &ExitError{Cmd: c.String(), Code: res.ExitCode, Stderr: Tail(res.Stderr, 3)}
	case errors.Is(err, exec.ErrNotFound):
		return res, fmt.Errorf("%s: command not found in PATH (install it or check PATH)", c.Name)
	default:
		return res, fmt.Errorf("%s: %w", c.String(), err)
	}
}

// Tail returns the last n non-empty lines of out joined by " | ".
func Tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var kept []string
	for i := len(lines) - 1; i >= 0 && len(kept) < n; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			kept = append([]string{l}, kept...)
		}
	}
	return strings.Join(kept, " | ")
}
