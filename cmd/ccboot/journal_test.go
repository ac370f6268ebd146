package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestStdoutIsJournal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := func(name string) (*os.File, string) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	}
	journal, stream := open("journal")
	other, _ := open("redirected")
	for _, c := range []struct {
		name   string
		f      *os.File
		stream string
		want   bool
	}{
		{"stdout is the service's stream", journal, stream, true},
		{"child of a service, stdout redirected", other, stream, false},
		{"no JOURNAL_STREAM", journal, "", false},
		{"garbage JOURNAL_STREAM", journal, "x:y", false},
	} {
		if got := stdoutIsJournal(c.f, c.stream); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}
