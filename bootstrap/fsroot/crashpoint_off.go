//go:build !crashhook

package fsroot

// CrashPoint marks a place where a crash-test build (go build -tags
// crashhook) can kill its own process; see crashpoint_on.go. In a normal
// build it is an empty function the compiler inlines away.
func CrashPoint(site, detail string) {}
