package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/ccboot/ccboot/bootstrap/broker"
)

// ProbeCommand is the hidden subcommand that runs ProbeMain: doctor
// re-executes ccboot's own binary (/proc/self/exe) with it, as the user.
const ProbeCommand = "__doctor-probe"

// probeReply is the child's one JSON line. Credentials travel to root on
// the pipe only; doctor never prints them.
type probeReply struct {
	Connected   bool                `json:"connected,omitempty"`
	Credentials *broker.Credentials `json:"credentials,omitempty"`
	Refusal     string              `json:"refusal,omitempty"`
	Error       string              `json:"error,omitempty"`
}

// ProbeMain is the child's side, run as the target user:
//
//	connect tcp|unix ADDRESS   can this user connect?
//	fetch SOCKET TIER          what does the broker answer this user?
//
// It refuses to run as root: its answers are about the user.
func ProbeMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if os.Geteuid() == 0 {
		fmt.Fprintln(stderr, "ccboot: "+ProbeCommand+" is internal to `ccboot doctor`, which runs it as the target user")
		return 2
	}
	var rep probeReply
	switch {
	case len(args) == 3 && args[0] == "connect" && (args[1] == "tcp" || args[1] == "unix"):
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, probeDialTimeout)
		c, err := d.DialContext(dctx, args[1], args[2])
		cancel()
		if err == nil {
			rep.Connected = true
			c.Close()
		} else {
			rep.Error = dialCause(err)
		}
	case len(args) == 3 && args[0] == "fetch":
		out, err := broker.Fetch(ctx, args[1], args[2], 10*time.Second)
		var refusal *broker.Refusal
		switch {
		case errors.As(err, &refusal):
			rep.Refusal = refusal.Line
		case err != nil:
			rep.Error = oneLine(err)
		default:
			var c broker.Credentials
			if err := json.Unmarshal(out, &c); err != nil {
				rep.Error = "the broker's answer is not credential_process JSON"
			} else {
				rep.Credentials = &c
			}
		}
	default:
		fmt.Fprintln(stderr, "ccboot: "+ProbeCommand+": internal to `ccboot doctor`")
		return 2
	}
	if err := json.NewEncoder(stdout).Encode(rep); err != nil {
		return 1
	}
	return 0
}

// dialCause is a dial error without the addresses: "connection refused",
// "i/o timeout".
func dialCause(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "no answer in " + probeDialTimeout.String()
	}
	return oneLine(err)
}

// runProbe starts argv+args with attr and reads its one reply, bounded.
func runProbe(ctx context.Context, argv []string, attr *syscall.SysProcAttr, args []string) (probeReply, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(append([]string(nil), argv[1:]...), args...)...)
	cmd.SysProcAttr = attr
	// Nothing of root's environment: the child needs none.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	cmd.Dir = "/"
	cmd.WaitDelay = time.Second
	var out, errOut limited
	out.max, errOut.max = maxProbeReply, 4096
	cmd.Stdout, cmd.Stderr = &out, &errOut
	uid := -1
	if attr.Credential != nil {
		uid = int(attr.Credential.Uid)
	}
	if err := cmd.Run(); err != nil {
		return probeReply{}, fmt.Errorf("a process as uid %d could not run the probe: %v %s", uid, err, bytes.TrimSpace(errOut.buf.Bytes()))
	}
	if out.over {
		return probeReply{}, fmt.Errorf("the probe as uid %d answered more than %d bytes", uid, maxProbeReply)
	}
	var rep probeReply
	if err := json.Unmarshal(out.buf.Bytes(), &rep); err != nil {
		return probeReply{}, fmt.Errorf("the probe as uid %d answered no JSON: %v", uid, err)
	}
	return rep, nil
}

// limited keeps at most max bytes and remembers that more came.
type limited struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (l *limited) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); len(p) > room {
		l.buf.Write(p[:max(room, 0)])
		l.over = true
		return len(p), nil
	}
	return l.buf.Write(p)
}
