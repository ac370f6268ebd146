package doctor

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// withMemFile hands the SDK, which loads shared config only by path, a file
// of ccboot's own bytes: an anonymous in-memory file (/proc/self/fd/N), so
// nothing is written and no path on disk (the user's ~/.aws/config, the
// operator's AWS_CONFIG_FILE) is read as root's shared config.
func withMemFile(data []byte, f func(path string) error) error {
	fd, err := unix.MemfdCreate("ccboot-doctor-aws-config", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	file := os.NewFile(uintptr(fd), "aws-config")
	defer file.Close()
	if _, err := file.Write(data); err != nil {
		return fmt.Errorf("write the in-memory config: %w", err)
	}
	return f(fmt.Sprintf("/proc/self/fd/%d", fd))
}
