package main

import (
	"fmt"
	"os"
	"syscall"
)

// stdoutIsJournal reports whether stdout is the journal stream systemd set
// up for this process. INVOCATION_ID alone is not enough: every child of
// a service inherits it, so `ccboot repair` run by the SSM agent, by a
// shell script in a unit or by cloud-init would print JSON log lines
// instead of its report. systemd.exec(5) documents JOURNAL_STREAM
// ("DEVICE:INODE" of the stream) for exactly this check.
func stdoutIsJournal(f *os.File, journalStream string) bool {
	if journalStream == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino) == journalStream
}
