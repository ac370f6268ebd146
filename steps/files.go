package steps

import (
	"errors"
	"io/fs"
	"strings"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// managedFile is one file a step renders: where it lives and the bytes,
// mode and owner it must have.
type managedFile struct {
	tree *fsroot.Tree
	name string // relative to tree
	want []byte
	spec fsroot.FileSpec
}

// drift records in d how the file differs from what it should be: missing,
// content (as a unified diff), mode, owner. It only reads; symbolic links,
// FIFOs and other non-regular files are errors (fsroot refuses them without
// opening, so a FIFO cannot block the read).
func (m managedFile) drift(d *bootstrap.Drift) error {
	display := m.tree.Path(m.name)
	// One descriptor: the mode and owner reported belong to the bytes read.
	old, fi, err := m.tree.ReadFileCheck(m.name, nil)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.Differ("create %s", display)
		d.Diff += bootstrap.UnifiedDiff(display, nil, m.want)
		return nil
	case err != nil:
		return err
	}
	if string(old) != string(m.want) {
		d.Differ("update %s", display)
		d.Diff += bootstrap.UnifiedDiff(display, old, m.want)
	}
	if fi.Mode().Perm() != m.spec.Mode.Perm() {
		d.Differ("chmod %s %04o (is %04o)", display, m.spec.Mode.Perm(), fi.Mode().Perm())
	}
	uid, gid := fsroot.Owner(fi)
	if (m.spec.UID != fsroot.KeepOwner && uid != m.spec.UID) || (m.spec.GID != fsroot.KeepOwner && gid != m.spec.GID) {
		d.Differ("chown %s %d:%d (is %d:%d)", display, m.spec.UID, m.spec.GID, uid, gid)
	}
	return nil
}

// write converges the file (a no-op when it already matches).
func (m managedFile) write() error {
	_, err := m.tree.WriteFile(m.name, m.want, m.spec)
	return err
}

// userHome opens the target user's home as a guarded tree: ccboot runs as
// root in a directory the user controls, so every file it reads or edits
// there must have one link, a bounded size and the owner it expects, all
// checked on the descriptor it then uses (see fsroot.Guarded).
func userHome(env *bootstrap.Env) (*fsroot.Tree, sysuser.User, error) {
	home, u, err := env.Home()
	if err != nil {
		return nil, u, err
	}
	return home.Guarded(), u, nil
}

// shellQuote makes s one single-quoted shell word. The shell expands
// nothing inside single quotes, and each quote inside s is written as
// close-quote, backslash-quote, reopen, so no value can ever become code.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellWord returns s unchanged when it is made only of characters that
// mean nothing to the shell, and shellQuote(s) otherwise. It keeps the
// common case readable (AWS_PROFILE=claudecode-readonly).
func shellWord(s string) string {
	if s == "" {
		return "''"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.,:/@%+=", r)) {
			return shellQuote(s)
		}
	}
	return s
}
