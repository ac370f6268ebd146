package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/units"
)

// The credential broker's units, where the step puts them. The service has
// no [Install]: the socket starts it on the first connection.
const (
	brokerSocketUnit  = "ccboot-broker.socket"
	brokerServiceUnit = "ccboot-broker.service"
	brokerUnitDir     = "etc/systemd/system/"
	brokerSocketWants = "etc/systemd/system/sockets.target.wants/" + brokerSocketUnit
	brokerSocketPath  = brokerUnitDir + brokerSocketUnit
	brokerServicePath = brokerUnitDir + brokerServiceUnit
)

// CredentialBroker installs and enables the credential broker's socket in
// [tiers] mode = enforced: in that mode the profiles' credential_process
// (aws-config) asks it, since only root reaches IMDS. In advisory mode it
// removes what an earlier enforced run left.
//
// A step, not part of `ccboot install`: install runs once from UserData,
// while a [tiers] mode change converges with `ccboot repair` (and the run
// at every boot) like the IMDS filter, status reports a deleted or edited
// unit as drift, and bake puts the enabled socket into an image.
//
// The socket is WantedBy=sockets.target, which basic.target pulls in and
// is ordered after; every ordinary service, systemd-user-sessions.service
// (which lets users log in) among them, is ordered after basic.target. So
// the broker listens before the user's first login, and systemd starts the
// service on the first connection.
type CredentialBroker struct{}

// Name implements bootstrap.Step.
func (CredentialBroker) Name() string { return "credential-broker" }

// Needs implements bootstrap.Step.
func (CredentialBroker) Needs() []string { return nil }

// Scope implements bootstrap.Step: unit files and the enable link belong
// in an image, so a baked image listens at its first boot.
func (CredentialBroker) Scope() bootstrap.Scope { return bootstrap.ScopeImage }

func brokerUnits(env *bootstrap.Env) []managedFile {
	spec := fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0}
	return []managedFile{
		{tree: env.Sys, name: brokerSocketPath, want: []byte(BrokerSocketUnitFile), spec: spec},
		{tree: env.Sys, name: brokerServicePath, want: []byte(BrokerServiceUnitFile), spec: spec},
	}
}

// Check implements bootstrap.Step.
func (s CredentialBroker) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	return s.check(ctx, env, hostOf(env))
}

// Apply implements bootstrap.Step.
func (s CredentialBroker) Apply(ctx context.Context, env *bootstrap.Env) error {
	return s.apply(ctx, env, hostOf(env))
}

func (CredentialBroker) check(ctx context.Context, env *bootstrap.Env, h host) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	if !env.Config.Enforced() {
		found, err := brokerLeftovers(env)
		if err != nil {
			return d, err
		}
		for _, name := range found {
			d.Differ("remove %s (left by [tiers] mode = enforced; advisory profiles do not use the broker)", env.Sys.Path(name))
		}
		if len(found) == 0 {
			d.Note("advisory: not enforced (set [tiers] mode = enforced to serve the tiers from the credential broker)")
		}
		return d, nil
	}
	for _, f := range brokerUnits(env) {
		if err := f.drift(&d); err != nil {
			return d, fmt.Errorf("credential-broker: %w", err)
		}
	}
	mgr := units.New(h.root(env), env.Run)
	enabled, err := mgr.IsEnabled(ctx, brokerSocketUnit)
	switch {
	case errors.Is(err, units.ErrNoUnit):
		d.Differ("enable %s", brokerSocketUnit)
	case err != nil:
		return d, fmt.Errorf("credential-broker: %w", err)
	case !enabled:
		d.Differ("enable %s (it listens from sockets.target, before any login)", brokerSocketUnit)
	}
	if !h.live || env.Baking {
		d.Note("%s listens from sockets.target at boot, before any login", brokerSocketUnit)
		return d, nil
	}
	active, err := mgr.IsActive(ctx, brokerSocketUnit)
	if err != nil {
		return d, fmt.Errorf("credential-broker: %w", err)
	}
	if !active {
		d.Differ("start %s (the profiles' credential_process asks it)", brokerSocketUnit)
	}
	return d, nil
}

func (CredentialBroker) apply(ctx context.Context, env *bootstrap.Env, h host) error {
	mgr := units.New(h.root(env), env.Run)
	if !env.Config.Enforced() {
		return removeBrokerLeftovers(ctx, env, h, mgr)
	}
	if _, err := env.Sys.EnsureDir(brokerUnitDir, fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("credential-broker: %w", err)
	}
	changed := false
	for _, f := range brokerUnits(env) {
		c, err := env.Sys.WriteFile(f.name, f.want, f.spec)
		if err != nil {
			return fmt.Errorf("credential-broker: %w", err)
		}
		changed = changed || c
	}
	if changed && h.live {
		if err := mgr.DaemonReload(ctx); err != nil {
			return fmt.Errorf("credential-broker: %w", err)
		}
	}
	if enabled, err := mgr.IsEnabled(ctx, brokerSocketUnit); err != nil || !enabled {
		if err := mgr.Enable(ctx, brokerSocketUnit); err != nil {
			return fmt.Errorf("credential-broker: enable %s: %w", brokerSocketUnit, err)
		}
	}
	if !h.live || env.Baking {
		return nil
	}
	if err := mgr.Start(ctx, brokerSocketUnit); err != nil {
		return fmt.Errorf("credential-broker: %w", err)
	}
	if changed {
		// A broker already serving keeps its old unit's settings until
		// restarted; a stopped one starts fresh on the next connection.
		if err := mgr.TryRestart(ctx, brokerServiceUnit); err != nil {
			return fmt.Errorf("credential-broker: %w", err)
		}
	}
	return nil
}

// brokerLeftovers are the broker's files an enforced run left. Advisory
// looks at files only and spawns nothing, so a default run costs what it
// did before this step existed.
func brokerLeftovers(env *bootstrap.Env) ([]string, error) {
	var found []string
	for _, name := range []string{brokerSocketWants, brokerSocketPath, brokerServicePath} {
		if _, err := env.Sys.Lstat(name); err == nil {
			found = append(found, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("credential-broker: %w", err)
		}
	}
	return found, nil
}

func removeBrokerLeftovers(ctx context.Context, env *bootstrap.Env, h host, mgr units.Manager) error {
	found, err := brokerLeftovers(env)
	if err != nil || len(found) == 0 {
		return err
	}
	if h.live && !env.Baking {
		// Stopped first: a socket left listening would go on serving
		// until the next boot.
		if err := mgr.Stop(ctx, brokerSocketUnit, brokerServiceUnit); err != nil {
			return fmt.Errorf("credential-broker: %w", err)
		}
	}
	for _, name := range found {
		if err := env.Sys.Remove(name); err != nil { // a link itself, never what it points to
			return fmt.Errorf("credential-broker: remove %s: %w", env.Sys.Path(name), err)
		}
	}
	if h.live {
		if err := mgr.DaemonReload(ctx); err != nil {
			return fmt.Errorf("credential-broker: %w", err)
		}
	}
	return nil
}

// BrokerSocketUnitFile and BrokerServiceUnitFile are what the step
// installs; packaging/systemd holds the same bytes
// (TestBrokerUnitFilesMatchPackaging), which the packages ship.
const (
	BrokerSocketUnitFile = `# ccboot's credential broker (enforced tiers). Installed and enabled by
# ccboot's credential-broker step only when [tiers] mode = enforced; at
# sockets.target, so it listens before any login. Mode 0666 on purpose:
# every local user may connect, and the broker decides who gets anything by
# the kernel's SO_PEERCRED, never by who could open the socket.
[Unit]
Description=ccboot credential broker socket (enforced tiers)
Documentation=https://github.com/ccboot/ccboot

[Socket]
ListenStream=` + broker.DefaultSocket + `
SocketUser=root
SocketGroup=root
SocketMode=0666
DirectoryMode=0755
RemoveOnStop=yes
Accept=no

[Install]
WantedBy=sockets.target
`
	BrokerServiceUnitFile = `# ccboot's credential broker (enforced tiers), started by ccboot-broker.socket.
# It runs as root for the instance role's credentials (only uid 0 may reach
# IMDS in enforced mode) but with no capabilities: it only reads root's
# config, root's 0700 approvals directory and /proc/PID/cgroup, and talks to
# IMDS and STS. Log lines (JSON) go to stdout, which is this unit's journal,
# and to ccboot's log, which systemd opens for it as stderr: /var/log stays
# read-only to the broker (ProtectSystem=strict).
[Unit]
Description=ccboot credential broker (enforced tiers)
Documentation=https://github.com/ccboot/ccboot
Requires=ccboot-broker.socket
After=ccboot-broker.socket

[Service]
Type=notify
NotifyAccess=main
ExecStart=/usr/local/bin/ccboot broker
StandardError=append:/var/log/ccboot.log
Restart=on-failure
RestartSec=1s
UMask=0077
# No capability at all: root's own files are readable without any.
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
# Read-only cgroupfs, and no cgroup namespace: /proc/PID/cgroup must show
# callers' paths from the host's root, as the approvals name them.
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
MemoryMax=64M
TasksMax=64
LimitNOFILE=1024
`
)
