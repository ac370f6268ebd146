package bootstrap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/coreos/go-systemd/v22/unit"
	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/units"
)

// Where `ccboot install` puts things (under the root).
const (
	InstalledBinary = "/usr/local/bin/ccboot"
	UnitName        = "ccboot.service"
	UnitPath        = "/etc/systemd/system/" + UnitName
	// BrokerServiceUnit serves the enforced tiers' credentials with the
	// installed binary (the credential-broker step installs it).
	BrokerServiceUnit = "ccboot-broker.service"
	brokerServicePath = "/etc/systemd/system/" + BrokerServiceUnit
	// YamaSysctlDir holds kernel.yama.ptrace_scope, which the
	// user-privileges step sets: the unit keeps it writable.
	YamaSysctlDir = "/proc/sys/kernel/yama"
)

// UnitFile renders ccboot.service.
//
// Ordering is the whole point here. UserData runs inside cloud-final.service
// and calls `ccboot install`, which starts this unit and waits for it. If
// this unit were ordered after cloud-final.service, cloud-init.target or
// multi-user.target (cloud-final itself is ordered after multi-user.target),
// its start job would wait for cloud-final, which waits for us: a deadlock
// until some timeout. So it is ordered only after network-online.target and
// cloud-init's network stage, which are both finished before cloud-final
// runs UserData, and it is wanted by multi-user.target without being ordered
// after it. cloud-init's own status then covers ccboot because UserData
// waits for the unit and exits with its result.
func UnitFile() []byte {
	opts := []*unit.UnitOption{
		unit.NewUnitOption("Unit", "Description", "ccboot: prepare this instance for Claude Code on Amazon Bedrock"),
		unit.NewUnitOption("Unit", "Documentation", "https://github.com/ccboot/ccboot"),
		unit.NewUnitOption("Unit", "Wants", "network-online.target"),
		unit.NewUnitOption("Unit", "After", "network-online.target cloud-init.service"),
		// oneshot + RemainAfterExit: `systemctl is-active ccboot` is
		// "active" after a successful run, so other units can
		// Requires=/After= it and start only after bootstrap.
		unit.NewUnitOption("Service", "Type", "oneshot"),
		unit.NewUnitOption("Service", "RemainAfterExit", "yes"),
		// STATUS= progress lines show in `systemctl status ccboot`.
		unit.NewUnitOption("Service", "NotifyAccess", "main"),
		unit.NewUnitOption("Service", "ExecStart", InstalledBinary+" run"),
		// oneshot units have no start timeout by default; a package
		// mirror that hangs must not hang the boot forever.
		unit.NewUnitOption("Service", "TimeoutStartSec", "45min"),
		unit.NewUnitOption("Service", "Environment", "HOME=/root"),
		unit.NewUnitOption("Service", "UMask", "0022"),
		// A bound on memory, so a run that goes wrong on hostile input is
		// killed in its own cgroup instead of the OOM killer choosing among
		// the host's processes. ccboot itself stays under ~50 MB (it
		// reads at most 1 MiB of any file in a user's home); apt-get, dpkg
		// and npm run in the same cgroup and need the headroom.
		unit.NewUnitOption("Service", "MemoryMax", "2G"),
		// Hardening that the steps survive. ProtectSystem and ProtectHome
		// stay off: ccboot writes /etc, /usr/local (npm), / (swap file) and
		// the user's home. NoNewPrivileges and RestrictSUIDSGID stay off:
		// package installs create setuid files and run maintainer scripts.
		unit.NewUnitOption("Service", "PrivateTmp", "yes"),
		unit.NewUnitOption("Service", "ProtectKernelTunables", "yes"),
		// The one tunable a step sets (user-privileges, enforced tiers:
		// kernel.yama.ptrace_scope); read-only, sysctl fails EACCES in the
		// unit. "-": kernels without Yama lack the path.
		unit.NewUnitOption("Service", "ReadWritePaths", "-"+YamaSysctlDir),
		unit.NewUnitOption("Service", "ProtectControlGroups", "yes"),
		unit.NewUnitOption("Service", "ProtectClock", "yes"),
		unit.NewUnitOption("Service", "RestrictRealtime", "yes"),
		unit.NewUnitOption("Service", "LockPersonality", "yes"),
		unit.NewUnitOption("Install", "WantedBy", "multi-user.target"),
	}
	var b bytes.Buffer
	b.WriteString("# Installed by `ccboot install`; rewritten by it. Local changes belong in a drop-in:\n# systemctl edit ccboot\n")
	_, _ = io.Copy(&b, unit.Serialize(opts))
	return b.Bytes()
}

// InstallResult says what install changed.
type InstallResult struct {
	BinaryChanged, UnitChanged bool
	Started                    bool // the unit ran (live only)
}

// Install copies the running binary into place, writes and enables the unit
// and, on a live system, starts it and waits for the run to finish.
func (s *Session) Install(ctx context.Context, self string) (InstallResult, error) {
	env := s.Env
	res, err := s.installFiles(ctx, self)
	if err != nil || !env.Live() {
		return res, err
	}
	mgr := units.New(env.Root, env.Run)
	if _, err := env.Sys.Lstat(brokerServicePath); err == nil && res.BinaryChanged {
		// A broker already serving runs the old binary until restarted
		// (its clients run the new one); a stopped one starts the new
		// binary on its next connection, and none is started here.
		if err := mgr.TryRestart(ctx, BrokerServiceUnit); err != nil {
			return res, fmt.Errorf("install: %w", err)
		}
	}
	res.Started = true
	if res.BinaryChanged || res.UnitChanged {
		// An upgrade (or a rollback) on an instance whose unit already ran:
		// RemainAfterExit keeps it active, so start alone would be a no-op
		// and the new binary would not run until the next boot.
		// try-restart runs it now and waits; an inactive or failed unit is
		// left to start below.
		if err := mgr.TryRestart(ctx, UnitName); err != nil {
			return res, fmt.Errorf("ccboot.service failed: %w", err)
		}
	}
	// start blocks until the oneshot run has finished (or failed).
	if err := mgr.Start(ctx, UnitName); err != nil {
		return res, fmt.Errorf("ccboot.service failed: %w", err)
	}
	return res, nil
}

// installFiles puts the binary and the unit in place and enables the unit,
// without starting it (bake stops here).
func (s *Session) installFiles(ctx context.Context, self string) (InstallResult, error) {
	env := s.Env
	var res InstallResult
	exe, err := os.ReadFile(self)
	if err != nil {
		return res, fmt.Errorf("read own binary %s: %w", self, err)
	}
	rootOwned := fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}
	for _, dir := range []string{"usr/local/bin", "etc/systemd/system"} {
		if _, err := env.Sys.EnsureDir(dir, rootOwned); err != nil {
			return res, fmt.Errorf("install: %w", err)
		}
	}
	if res.BinaryChanged, err = env.Sys.WriteFile(InstalledBinary, exe, rootOwned); err != nil {
		return res, fmt.Errorf("install binary: %w", err)
	}
	if res.UnitChanged, err = env.Sys.WriteFile(UnitPath, UnitFile(), fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0}); err != nil {
		return res, fmt.Errorf("install unit: %w", err)
	}
	mgr := units.New(env.Root, env.Run)
	if res.UnitChanged {
		if err := mgr.DaemonReload(ctx); err != nil {
			return res, fmt.Errorf("install: %w", err)
		}
	}
	if err := mgr.Enable(ctx, UnitName); err != nil {
		return res, fmt.Errorf("install: %w", err)
	}
	env.Log.Info("installed", zap.Bool("binary_changed", res.BinaryChanged), zap.Bool("unit_changed", res.UnitChanged))
	return res, nil
}

// checkInstalled reports whether the binary and the unit bake installs are
// in place and the unit is enabled; why says what is missing.
func (s *Session) checkInstalled(ctx context.Context) (ok bool, why string, err error) {
	env := s.Env
	for _, p := range []string{InstalledBinary, UnitPath} {
		fi, err := env.Sys.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Sprintf("%s is missing (run `ccboot bake`)", env.Sys.Path(p)), nil
		}
		if err != nil {
			return false, "", err
		}
		if !fi.Mode().IsRegular() {
			return false, fmt.Sprintf("%s is not a regular file", env.Sys.Path(p)), nil
		}
	}
	unit, err := env.Sys.ReadFile(UnitPath)
	if err != nil {
		return false, "", err
	}
	if !bytes.Equal(unit, UnitFile()) {
		return false, fmt.Sprintf("%s differs from what this ccboot writes (run `ccboot bake`)", env.Sys.Path(UnitPath)), nil
	}
	enabled, err := units.New(env.Root, env.Run).IsEnabled(ctx, UnitName)
	if err != nil {
		return false, "", err
	}
	if !enabled {
		return false, fmt.Sprintf("%s is not enabled (run `ccboot bake`)", UnitName), nil
	}
	return true, "", nil
}
