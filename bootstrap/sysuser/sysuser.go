// Package sysuser reads users and groups from a root's /etc/passwd and
// /etc/group. ccboot cannot use os/user: under --root it must read the
// image's databases, not the host's.
package sysuser

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// User is one /etc/passwd entry.
type User struct {
	Name string
	UID  int
	GID  int
	Home string // absolute, as written in passwd
}

// ErrNoUser is wrapped when a user does not exist.
var ErrNoUser = errors.New("no such user")

// Lookup finds name in the tree's /etc/passwd.
func Lookup(sys *fsroot.Tree, name string) (User, error) {
	data, err := sys.ReadInfo("etc/passwd")
	if err != nil {
		return User{}, fmt.Errorf("read %s: %w", sys.Path("etc/passwd"), err)
	}
	for _, f := range records(data, 7) {
		if f[0] != name {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || f[5] == "" || !strings.HasPrefix(f[5], "/") {
			return User{}, fmt.Errorf("%s: malformed entry for %q", sys.Path("etc/passwd"), name)
		}
		return User{Name: name, UID: uid, GID: gid, Home: f[5]}, nil
	}
	return User{}, fmt.Errorf("user %q %w in %s; create it first or set [ccboot] user in the config", name, ErrNoUser, sys.Path("etc/passwd"))
}

// Group is one /etc/group entry.
type Group struct {
	Name    string
	GID     int
	Members []string
}

// LookupGroup finds name in the tree's /etc/group; found is false when absent.
func LookupGroup(sys *fsroot.Tree, name string) (g Group, found bool, err error) {
	data, err := sys.ReadInfo("etc/group")
	if errors.Is(err, fs.ErrNotExist) {
		return Group{}, false, nil
	}
	if err != nil {
		return Group{}, false, fmt.Errorf("read %s: %w", sys.Path("etc/group"), err)
	}
	for _, f := range records(data, 4) {
		if f[0] != name {
			continue
		}
		gid, err := strconv.Atoi(f[2])
		if err != nil {
			return Group{}, false, fmt.Errorf("%s: malformed entry for group %q", sys.Path("etc/group"), name)
		}
		g := Group{Name: name, GID: gid}
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				g.Members = append(g.Members, m)
			}
		}
		return g, true, nil
	}
	return Group{}, false, nil
}

// ShadowGroup is what /etc/gshadow says of a group.
type ShadowGroup struct {
	File    bool // the tree has an /etc/gshadow at all
	Found   bool // it has an entry for the group
	Members []string
}

// LookupShadowGroup reads name's entry in the tree's /etc/gshadow.
// groupadd and usermod write /etc/group first and /etc/gshadow second, so
// one killed in between leaves the two disagreeing: callers compare.
func LookupShadowGroup(sys *fsroot.Tree, name string) (ShadowGroup, error) {
	data, err := sys.ReadInfo("etc/gshadow")
	if errors.Is(err, fs.ErrNotExist) {
		return ShadowGroup{}, nil
	}
	if err != nil {
		return ShadowGroup{}, fmt.Errorf("read %s: %w", sys.Path("etc/gshadow"), err)
	}
	sg := ShadowGroup{File: true}
	for _, f := range records(data, 4) {
		if f[0] != name {
			continue
		}
		sg.Found = true
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				sg.Members = append(sg.Members, m)
			}
		}
		return sg, nil
	}
	return sg, nil
}

// HasMember reports whether user is listed as a supplementary member.
func (g Group) HasMember(user string) bool {
	for _, m := range g.Members {
		if m == user {
			return true
		}
	}
	return false
}

func records(data []byte, fields int) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < fields {
			continue
		}
		out = append(out, f)
	}
	return out
}
