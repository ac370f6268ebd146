// Package broker is the credential broker of enforced tiers: a root-owned
// server on a unix socket that hands the target user the ReadOnly tier's
// credentials, and Elevated's only while an admin's approval is active and
// only to the approved session's processes.
//
// Callers are told apart by the kernel's word: SO_PEERCRED gives the uid
// and pid of the process that connected, /proc/PID/cgroup which cgroup it
// is in. Nothing the caller sends or knows (no token, no environment)
// decides anything; the request only names the tier.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"go.uber.org/zap"
)

// Defaults for the bounds of one request.
const (
	DefaultReadTimeout = 2 * time.Second
	DefaultSTSTimeout  = 10 * time.Second
	// refreshBefore: a cached credential is handed out only while it has
	// at least this long left, so SDKs never get one about to expire.
	refreshBefore = 5 * time.Minute
	// maxConns bounds connections served at once; more wait in the
	// socket's backlog.
	maxConns = 64
	// DefaultSlice is the cgroup of the slice elevate's scopes go to.
	DefaultSlice = "/system.slice"
)

// Config is what the broker serves and how.
type Config struct {
	// UID is the only caller served; User is its name (for messages).
	UID  int
	User string
	// ReadOnly and Elevated are the roles, both assumed with the instance
	// role's credentials.
	ReadOnly, Elevated Role
	STS                Assumer
	Approvals          *Approvals
	// CgroupMount is the cgroup v2 hierarchy, Slice the cgroup (below it)
	// where approved scopes live: an approval of unit U admits callers in
	// Slice/U and below.
	CgroupMount, Slice string
	// Now is the clock (tests inject one); nil means time.Now.
	Now         func() time.Time
	ReadTimeout time.Duration // for the request line
	STSTimeout  time.Duration // for one issuance
	Log         *zap.Logger
}

// Server serves Config on listeners.
type Server struct {
	cfg Config
	log *zap.Logger

	mu    sync.Mutex
	cache map[string]Credentials
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.STS == nil:
		return nil, errors.New("broker: no STS")
	case cfg.Approvals == nil:
		return nil, errors.New("broker: no approvals store")
	case cfg.ReadOnly.ARN == "" || cfg.Elevated.ARN == "":
		return nil, errors.New("broker: the ReadOnly and Elevated role ARNs are needed")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.STSTimeout <= 0 {
		cfg.STSTimeout = DefaultSTSTimeout
	}
	if cfg.Slice == "" {
		cfg.Slice = DefaultSlice
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	return &Server{cfg: cfg, log: cfg.Log, cache: map[string]Credentials{}}, nil
}

// Listen makes the socket at path (tests and running without systemd):
// mode 0666 so any local user can connect, since the broker decides by
// SO_PEERCRED who gets anything. A stale socket is replaced. The socket is
// bound at a temporary name beside path and renamed into place after its
// chmod, so nobody ever finds path with the umask's mode (a caller then got
// EACCES, or a test saw 0755).
func Listen(p string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(p)
	}
	tmp := filepath.Join(filepath.Dir(p), fmt.Sprintf(".%s.%d", filepath.Base(p), os.Getpid()))
	_ = os.Remove(tmp) // a leftover of a killed broker with this pid
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w", p, err)
	}
	// Close would unlink the name it bound, which the rename moves away; a
	// socket left at path is replaced by the next Listen.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o666); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("broker: chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("broker: listen on %s: %w", p, err)
	}
	return l, nil
}

// SystemdListener is the socket systemd passed (ccboot-broker.socket).
func SystemdListener() (*net.UnixListener, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("broker: socket activation: %w", err)
	}
	if len(ls) != 1 {
		return nil, fmt.Errorf("broker: systemd passed %d sockets, want 1; start it through ccboot-broker.socket or give --socket PATH", len(ls))
	}
	ul, ok := ls[0].(*net.UnixListener)
	if !ok {
		return nil, fmt.Errorf("broker: systemd passed a %T, want a unix stream socket (ListenStream=%s)", ls[0], DefaultSocket)
	}
	return ul, nil
}

// Serve answers connections until ctx ends, each on its own goroutine with
// its own deadlines: a wedged caller or STS holds up only its own request.
func (s *Server) Serve(ctx context.Context, l *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxConns)
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("broker: accept: %w", err)
			}
			// Out of descriptors and the like: wait, and keep serving.
			s.log.Error("accept failed", zap.Error(err))
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			c.Close()
			return nil
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			s.handle(ctx, c)
		}()
	}
}

func (s *Server) handle(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	reply := func(line string) {
		_ = c.SetWriteDeadline(time.Now().Add(s.cfg.ReadTimeout))
		_, _ = c.Write([]byte(line + "\n"))
	}
	p, err := peerOf(c)
	if err != nil {
		s.log.Error("refused a caller: no peer credentials", zap.Error(err))
		reply("ccboot broker: cannot tell who is calling (" + oneLine(err) + ")")
		return
	}
	defer p.close()
	log := s.log.With(zap.Int("uid", p.UID), zap.Int("pid", p.PID))
	if p.UID != s.cfg.UID {
		log.Warn("refused a caller: not the target user", zap.Int("want_uid", s.cfg.UID))
		reply(fmt.Sprintf("ccboot broker: refused: uid %d is not %s (uid %d); the credential broker serves only the user Claude Code runs as", p.UID, s.cfg.User, s.cfg.UID))
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	tier, err := readRequest(c)
	if err != nil {
		log.Warn("refused a request", zap.Error(err))
		reply(oneLine(err))
		return
	}
	log = log.With(zap.String("tier", tier))
	ctx, cancel := context.WithTimeout(ctx, s.cfg.STSTimeout)
	defer cancel()
	creds, unit, err := s.issue(ctx, p, tier, log)
	if err != nil {
		log.Warn("refused credentials", zap.String("approval", unit), zap.Error(err))
		reply(oneLine(err))
		return
	}
	log.Info("issued credentials", zap.String("approval", unit), zap.String("expiration", creds.Expiration))
	line, _ := jsonLine(creds)
	reply(line)
}

// issue returns tier's credentials for p, and the approval unit for Elevated.
func (s *Server) issue(ctx context.Context, p peer, tier string, log *zap.Logger) (Credentials, string, error) {
	now := s.cfg.Now()
	if tier == ReadOnly {
		c, err := s.assume(ctx, ReadOnly, s.cfg.ReadOnly, maxSessionDuration, now)
		return c, "", err
	}
	a, err := s.approvalFor(p, now, log)
	if err != nil {
		return Credentials{}, "", err
	}
	key := Elevated + "/" + a.Unit + "/" + a.Created.Format(time.RFC3339Nano)
	c, err := s.assume(ctx, key, s.cfg.Elevated, elevatedDuration(a.Until.Sub(now)), now)
	return c, a.Unit, err
}

// approvalFor finds the active approval whose session p belongs to: same
// uid, and p's cgroup inside the approved unit's (root-owned) cgroup.
func (s *Server) approvalFor(p peer, now time.Time, log *zap.Logger) (Approval, error) {
	active, err := s.cfg.Approvals.Active(now)
	if err != nil {
		log.Error("approvals unusable", zap.Error(err))
		return Approval{}, errNotApproved
	}
	if len(active) == 0 {
		return Approval{}, errNotApproved
	}
	cgroup, err := cgroupOf(p.PID)
	if err == nil && !p.sameProcess() {
		err = errors.New("the caller exited before its cgroup was read")
	}
	if err != nil {
		log.Warn("refused Elevated: caller's cgroup unknown", zap.Error(err))
		return Approval{}, errNotApproved
	}
	for _, a := range active {
		want := path.Join(s.cfg.Slice, a.Unit)
		if a.UID != p.UID || !within(cgroup, want) {
			continue
		}
		if err := rootOwnedCgroup(s.cfg.CgroupMount, want); err != nil {
			log.Error("ignoring approval: its cgroup is not root's", zap.String("approval", a.Unit), zap.Error(err))
			continue
		}
		return a, nil
	}
	log.Info("refused Elevated: caller is outside every approved session", zap.String("cgroup", cgroup), zap.Int("active_approvals", len(active)))
	return Approval{}, errNotApproved
}

// assume returns cached credentials for key while they have refreshBefore
// left, else asks STS. The lock is never held across the STS call, so a
// wedged STS cannot hold up a request that the cache can answer.
func (s *Server) assume(ctx context.Context, key string, r Role, d time.Duration, now time.Time) (Credentials, error) {
	s.mu.Lock()
	c, ok := s.cache[key]
	s.mu.Unlock()
	if ok && c.expires().Sub(now) > refreshBefore {
		return c, nil
	}
	c, err := s.cfg.STS.AssumeRole(ctx, r, d)
	if err != nil {
		if ctx.Err() != nil {
			return Credentials{}, fmt.Errorf("ccboot broker: STS did not answer within %s assuming %s; try again, and check the instance's route to STS", s.cfg.STSTimeout, r.ARN)
		}
		return Credentials{}, fmt.Errorf("ccboot broker: STS AssumeRole of %s: %v", r.ARN, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, old := range s.cache {
		if !old.expires().After(now) {
			delete(s.cache, k) // ended approvals' credentials do not pile up
		}
	}
	s.cache[key] = c
	return c, nil
}
