package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// LogPath is ccboot's JSON log (under the root).
const LogPath = "/var/log/ccboot.log"

// Options is what the command line decided.
type Options struct {
	Root       string            // "/" unless --root
	ConfigPath string            // inside Root; DefaultConfigPath unless --config
	Overrides  map[string]string // "section.key" -> value
	// Sets are the --set arguments (section.key=value) in command-line
	// order; a malformed one or a key given twice is a config error.
	Sets []string
	// BadConfigOK opens the session even when the config is broken, with
	// the defaults and the problems in ConfigErr (status shows the last run
	// regardless). Such a session refuses to Converge.
	BadConfigOK bool
	Skip, Only  []string
	Steps       []Step
	Version     string
	// Journal: running under systemd, so JSON log lines also go to stdout.
	Journal bool
	// ReadOnly commands (plan, status) write nothing, not even the log file.
	ReadOnly bool
	// AppendLog, when set, also receives the JSON log lines: a log file a
	// sandboxed command cannot open itself but was handed open (the broker's
	// StandardError=append:/var/log/ccboot.log). ReadOnly still holds.
	AppendLog io.Writer
	// Verify: re-read installed content instead of trusting recorded size
	// and mtime (repair --verify).
	Verify  bool
	Verbose bool
	Stdout  io.Writer
	// Runner and Meta replace the real ones (tests, fault injection).
	Runner runner.Runner
	Meta   metadata.Source
	// Notify receives progress lines (systemd STATUS=); nil means none.
	Notify func(string)
	// Bake: building an image (ccboot bake). No IMDS, no log file (the log
	// belongs to an instance), Env.Baking set.
	Bake bool
}

// Session is an opened root with its config, logger and metadata source.
type Session struct {
	Env     *Env
	opts    Options
	logFile *os.File
	// configErr holds the config's problems when BadConfigOK opened it anyway.
	configErr ConfigErrors
}

// Open validates the config and prepares everything a command needs.
// Config problems come back as *ConfigError before anything is written.
func Open(opts Options) (*Session, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.ConfigPath == "" {
		opts.ConfigPath = DefaultConfigPath
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, &ConfigError{fmt.Sprintf("--root %s: not a directory; give the directory the system to bootstrap lives in", opts.Root)}
	}
	sys, err := fsroot.Open(root)
	if err != nil {
		return nil, err
	}
	// Every problem at once: the file's, the flags', and unknown steps.
	cfg, problems := loadConfig(sys, opts.ConfigPath, opts.Sets, opts.Overrides)
	// Steps turned off by the config and by flags alike.
	opts.Skip = append(append([]string(nil), cfg.Skip...), opts.Skip...)
	eng := &Engine{Steps: opts.Steps, Skip: opts.Skip, Only: opts.Only}
	if err := eng.Validate(); err != nil {
		var ce *ConfigError
		if !errors.As(err, &ce) {
			sys.Close()
			return nil, err
		}
		problems = append(problems, ce)
	}
	if len(problems) > 0 {
		if !opts.BadConfigOK {
			sys.Close()
			return nil, problems
		}
		// Nothing of a broken config is used: defaults, and no skip list.
		cfg = DefaultConfig()
		opts.Skip = nil
	}
	s := &Session{opts: opts, configErr: problems}
	log := s.newLogger(sys)
	meta := opts.Meta
	if opts.Bake {
		meta = noIMDS()
	}
	if meta == nil {
		meta = metadata.NewIMDS(cfg.IMDSEndpoint, cfg.IMDSTimeout, log.Named("imds"))
	}
	run := opts.Runner
	if run == nil {
		run = &runner.Exec{Log: log.Named("exec")}
	}
	notify := opts.Notify
	if notify == nil {
		notify = func(string) {}
	}
	s.Env = &Env{Root: root, Sys: sys, Run: run, Meta: meta, Log: log, Config: cfg, Progress: notify, Baking: opts.Bake, Verify: opts.Verify}
	return s, nil
}

// ConfigErr is the config's problems (nil when it is valid). Only a
// session opened with BadConfigOK has any.
func (s *Session) ConfigErr() ConfigErrors { return s.configErr }

// Close flushes the log and releases the root.
func (s *Session) Close() {
	_ = s.Env.Log.Sync()
	if s.logFile != nil {
		s.logFile.Close()
	}
	s.Env.Sys.Close()
}

// newLogger writes JSON lines to the log file and, under systemd, to stdout
// (the journal). The readable console lines are printed separately.
func (s *Session) newLogger(sys *fsroot.Tree) *zap.Logger {
	level := zap.InfoLevel
	if s.opts.Verbose {
		level = zap.DebugLevel
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewJSONEncoder(encCfg)
	var cores []zapcore.Core
	if f := s.openLogFile(sys); f != nil {
		s.logFile = f
		cores = append(cores, zapcore.NewCore(enc, zapcore.AddSync(f), level))
	}
	if s.opts.AppendLog != nil {
		cores = append(cores, zapcore.NewCore(enc.Clone(), zapcore.AddSync(s.opts.AppendLog), level))
	}
	if s.opts.Journal && s.opts.Stdout != nil {
		cores = append(cores, zapcore.NewCore(enc.Clone(), zapcore.AddSync(s.opts.Stdout), level))
	}
	return zap.New(zapcore.NewTee(cores...)).With(zap.Int("pid", os.Getpid()))
}

// Journal reports whether log lines go to the journal (running under systemd).
func (s *Session) Journal() bool { return s.opts.Journal }

// openLogFile opens the JSON log for appending; nil for read-only commands
// (plan and status write nothing) or when it cannot be opened.
func (s *Session) openLogFile(sys *fsroot.Tree) *os.File {
	if s.opts.ReadOnly || s.opts.Bake {
		return nil
	}
	if _, err := sys.EnsureDir("var/log", fsroot.FileSpec{Mode: 0o755, UID: fsroot.KeepOwner, GID: fsroot.KeepOwner}); err != nil {
		return nil
	}
	// Bounded: a log over LogMaxSize becomes LogPath.1 (replacing the one
	// before) when a run opens it, so the log and its predecessor hold at
	// most about twice that.
	if fi, err := sys.Lstat(LogPath); err == nil && fi.Mode().IsRegular() && fi.Size() > LogMaxSize {
		_ = sys.Rename(LogPath, LogPath+".1")
	}
	f, err := sys.OpenFile(LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil
	}
	return f
}

// LogMaxSize is the size at which the log is rotated to LogPath.1.
const LogMaxSize = 10 << 20

// LogFile is where the JSON log goes, for messages.
func (s *Session) LogFile() string { return s.Env.Sys.Path(LogPath) }

// ConfigHash identifies the effective config, so a run can tell whether the
// recorded state was produced by the same settings.
func ConfigHash(c *Config) string {
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Converge runs (ModeRun / ModeRepair) or checks (ModePlan / ModeCheck) every
// step. Converging modes take the run lock and save state after each step.
func (s *Session) Converge(ctx context.Context, mode Mode, finished func(StepReport), onWait func(holder int)) (Report, error) {
	env := s.Env
	if len(s.configErr) > 0 {
		return Report{}, s.configErr
	}
	// Only converging modes use the recorded run (run trusts its successes,
	// the wait condition is signalled once); plan and check read nothing.
	var prev *Report
	if mode.converges() {
		lock, err := AcquireLock(ctx, env.Sys, env.Config.LockTimeout, onWait)
		if err != nil {
			return Report{}, err
		}
		defer lock.Release()
		if prev, err = LoadState(env.Sys); err != nil {
			env.Log.Warn("ignoring unreadable state", zap.Error(err))
			prev = nil
		}
	}
	report := Report{
		Version:    s.opts.Version,
		ConfigHash: ConfigHash(env.Config),
		PID:        os.Getpid(),
		Started:    time.Now().UTC(),
		LogFile:    s.LogFile(),
	}
	if id, err := env.Meta.InstanceID(ctx); err == nil {
		report.InstanceID = id
		if prev != nil && prev.InstanceID != "" && prev.InstanceID != id {
			env.Log.Info("new instance: recorded state belongs to another instance", zap.String("recorded", prev.InstanceID), zap.String("now", id))
			prev = nil
		}
		if prev != nil && prev.InstanceID == id {
			report.WaitConditionSignalled = prev.WaitConditionSignalled
		}
	} else {
		// Steps that need metadata will fail with the cause; the others
		// can still converge (e.g. packages on an image bake without IMDS).
		env.Log.Warn("instance ID unavailable", zap.Error(err))
	}
	eng := &Engine{
		Env: env, Steps: s.opts.Steps, Skip: s.opts.Skip, Only: s.opts.Only,
		Previous: prev, Finished: finished,
	}
	if mode.converges() {
		eng.Save = func(r Report) error { return SaveState(env.Sys, r) }
	}
	env.Log.Info("start", zap.String("mode", string(mode)), zap.String("root", env.Root), zap.String("instance_id", report.InstanceID), zap.String("version", s.opts.Version))
	report = eng.Execute(ctx, mode, report)
	report.Finished = time.Now().UTC()
	if mode.converges() {
		if err := SaveState(env.Sys, report); err != nil {
			return report, fmt.Errorf("save state: %w", err)
		}
	}
	env.Log.Info("done", zap.String("mode", string(mode)), zap.Int("changed", report.Count(ResultChanged)), zap.Bool("failed", report.Failed()), selfCost(env.Run))
	env.Progress(Summary(&report))
	return report, nil
}

// Status returns the recorded report; with check, each step's Check runs too
// and drift is reported in place of the recorded result.
func (s *Session) Status(ctx context.Context, check bool) (*Report, error) {
	prev, err := LoadState(s.Env.Sys)
	if err != nil {
		return nil, err
	}
	if !check {
		return prev, nil
	}
	checked, err := s.Converge(ctx, ModeCheck, nil, nil)
	if err != nil {
		return nil, err
	}
	// Keep what only the recorded run knows (when, which failed and why)
	// and overlay what the checks found now.
	if prev != nil {
		for i, st := range checked.Steps {
			if rec, ok := prev.Step(st.Name); ok && (rec.Result == ResultFailed || rec.Result == ResultBlocked) && st.Result == ResultDrift {
				checked.Steps[i].Error = rec.Error
			}
		}
		checked.Started, checked.Finished = prev.Started, prev.Finished
		checked.InstanceID = prev.InstanceID
	}
	return &checked, nil
}

// ErrNoRunYet is returned by WaitForRun when it timed out without ever
// seeing a finished run.
var ErrNoRunYet = errors.New("no finished ccboot run yet")

// WaitForRun blocks until no run holds the lock and a finished run is
// recorded, or until timeout.
func WaitForRun(ctx context.Context, sys *fsroot.Tree, timeout time.Duration) (*Report, error) {
	deadline := time.Now().Add(timeout)
	for {
		held, _, err := LockHeld(sys)
		if err != nil {
			return nil, err
		}
		if !held {
			r, err := LoadState(sys)
			if err != nil {
				return nil, err
			}
			if r != nil && r.Complete {
				return r, nil
			}
		}
		if timeout > 0 && time.Now().After(deadline) {
			if held, pid, _ := LockHeld(sys); held {
				return nil, fmt.Errorf("%s still holds the run lock after %s", HolderName(pid), timeout)
			}
			return nil, fmt.Errorf("%w after %s", ErrNoRunYet, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// WaitWhileRunning blocks while a run holds the lock, or until timeout (0:
// no limit). With a broken config no new run can finish, so status --wait
// waits only for a run already under way (started with the old config).
func WaitWhileRunning(ctx context.Context, sys *fsroot.Tree, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		held, pid, err := LockHeld(sys)
		if err != nil {
			return err
		}
		if !held {
			return nil
		}
		if timeout > 0 && time.Now().After(deadline) {
			return fmt.Errorf("ccboot (pid %d) is still running after %s", pid, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Summary is the one-line outcome of a run.
func Summary(r *Report) string {
	switch {
	case r.Failed():
		return fmt.Sprintf("failed: %v (%d changed)", r.FailedSteps(), r.Count(ResultChanged))
	case r.Count(ResultDrift) > 0:
		return fmt.Sprintf("%d of %d steps differ", r.Count(ResultDrift), len(r.Steps))
	default:
		return fmt.Sprintf("done: %d changed, %d ok, %d skipped", r.Count(ResultChanged), r.Count(ResultOK), r.Count(ResultSkipped))
	}
}

// selfCost is ccboot's own footprint so far, children excluded: CPU time and
// peak RSS of this process, and how many processes it started. The benchmark
// (packaging/bench) reads it from the log; /usr/bin/time would count apt and
// npm too.
func selfCost(run runner.Runner) zap.Field {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fields := []zap.Field{
		zap.Int64("cpu_ms", (ru.Utime.Nano()+ru.Stime.Nano())/1e6),
		zap.Int64("maxrss_kib", ru.Maxrss),
	}
	if e, ok := run.(*runner.Exec); ok {
		fields = append(fields, zap.Int64("spawned", e.Spawned()))
	}
	return zap.Dict("self", fields...)
}
