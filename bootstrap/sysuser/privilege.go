package sysuser

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// RootGroups grant root, or what amounts to it, to their members. The
// user-privileges step takes the user out of them and doctor proves it.
var RootGroups = []string{
	"docker", // the daemon's socket runs containers as root
	"wheel",  // Amazon Linux's and Fedora's sudo group (%wheel ALL=(ALL) ALL)
	"sudo",   // Debian's and Ubuntu's sudo group
	"admin",  // Ubuntu's sudo group before 12.04, still honoured by its sudoers
	"adm",    // reads every log, cloud-init's with UserData and any secret in it
	"lxd",    // the LXD socket starts privileged containers
	"disk",   // raw block devices: read and write any file
}

// GroupsOf returns the groups u belongs to: its primary group (when
// /etc/group names it) and every group that lists it as a member.
func GroupsOf(sys *fsroot.Tree, u User) ([]Group, error) {
	data, err := sys.ReadInfo("etc/group")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sys.Path("etc/group"), err)
	}
	var out []Group
	for _, f := range records(data, 4) {
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		g := Group{Name: f[0], GID: gid}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				g.Members = append(g.Members, m)
			}
		}
		if gid == u.GID || g.HasMember(u.Name) {
			out = append(out, g)
		}
	}
	return out, nil
}

// SudoList is what `sudo -l -U USER` (LC_ALL=C) said of a user.
type SudoList struct {
	None  bool   // "is not allowed to run sudo"
	Rules string // the rules it lists, in one line; "" with None
}

// ParseSudoList reads the output of `sudo -l -U USER` run with LC_ALL=C;
// ok is false when it says neither that the user may not run sudo nor
// which rules it has.
func ParseSudoList(out string) (l SudoList, ok bool) {
	switch {
	case strings.Contains(out, "is not allowed to run sudo"):
		return SudoList{None: true}, true
	case strings.Contains(out, "may run the following commands"):
		_, rules, _ := strings.Cut(out, "may run the following commands on ")
		if _, after, ok := strings.Cut(rules, ":"); ok {
			rules = after // past the host name
		}
		return SudoList{Rules: strings.Join(strings.Fields(rules), " ")}, true
	}
	return SudoList{}, false
}
