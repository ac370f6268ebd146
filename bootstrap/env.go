package bootstrap

import (
	"context"
	"fmt"
	"path"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// Env is everything a step may touch. There is no package-level state: two
// Envs over two roots can run side by side (tests do).
type Env struct {
	// Root is the directory the system lives in: "/" on an instance, a
	// throwaway or image directory under --root.
	Root string
	// Sys is Root opened as a tree; all file access goes through it.
	Sys *fsroot.Tree
	// Run runs external commands.
	Run runner.Runner
	// Meta answers metadata questions (cached per run).
	Meta metadata.Source
	// Log is the structured logger.
	Log *zap.Logger
	// Config is the validated configuration.
	Config *Config
	// Progress reports a one-line status (systemd STATUS=); never nil.
	Progress func(string)
	// Baking: `ccboot bake` is building an image. Only image steps run,
	// nothing is started, and the parts of an image step that belong to an
	// instance (the user, created at first boot, joining a group) are left
	// to the boot.
	Baking bool
	// Verify asks Check to re-hash what it would otherwise trust by its
	// recorded size and mtime (repair --verify).
	Verify bool
}

// Live reports whether Root is the running system. Only then does ccboot
// activate anything (swapon, starting services); under --root it only
// writes files and enables units, which is the offline image-bake mode.
func (e *Env) Live() bool { return e.Root == "/" }

// InRoot makes c run against the root: unchanged on a live system, through
// chroot otherwise. Steps whose tools have a --root flag of their own
// (usermod, systemctl, dnf) use that instead.
func (e *Env) InRoot(c runner.Cmd) runner.Cmd {
	if e.Live() {
		return c
	}
	return runner.Cmd{Name: "chroot", Args: append([]string{e.Root, c.Name}, c.Args...), Env: c.Env, Stdin: c.Stdin}
}

// TargetUser looks up the configured user in the root's /etc/passwd.
func (e *Env) TargetUser() (sysuser.User, error) {
	return sysuser.Lookup(e.Sys, e.Config.User)
}

// Home opens the target user's home directory as a tree of its own, so no
// path inside it can lead out of it.
func (e *Env) Home() (*fsroot.Tree, sysuser.User, error) {
	u, err := e.TargetUser()
	if err != nil {
		return nil, u, err
	}
	home, err := e.Sys.Sub(path.Clean(u.Home))
	if err != nil {
		return nil, u, fmt.Errorf("open home directory %s of %s: %w (create the user's home first)", e.Sys.Path(u.Home), u.Name, err)
	}
	return home, u, nil
}

// Region is the configured region, else the instance's region from IMDS.
func (e *Env) Region(ctx context.Context) (string, error) {
	if e.Config.Region != "" {
		return e.Config.Region, nil
	}
	r, err := e.Meta.Region(ctx)
	if err != nil {
		return "", fmt.Errorf("%w; or set [aws] region in %s", err, DefaultConfigPath)
	}
	return r, nil
}

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}
