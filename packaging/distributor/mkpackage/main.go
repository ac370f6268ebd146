// Command mkpackage writes ccboot's SSM Distributor package (manifest.json
// and the zips) for make dist, then checks what it wrote:
//
//	go run ./packaging/distributor/mkpackage -version V -epoch SOURCE_DATE_EPOCH \
//	  -out DIR -bin amd64=PATH -bin arm64=PATH -doc LICENSE -doc THIRD_PARTY_LICENSES
//
// It prints the names it wrote, one a line, for dist.sh's SHA256SUMS.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ccboot/ccboot/packaging/distributor"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var o distributor.Options
	var bins, docs list
	epoch := flag.Int64("epoch", 0, "mtime of every zip entry, seconds since 1970 (SOURCE_DATE_EPOCH)")
	flag.StringVar(&o.Version, "version", "", "package version (Distributor's version name)")
	flag.StringVar(&o.Out, "out", "", "directory for manifest.json and the zips")
	flag.Var(&bins, "bin", "GOARCH=PATH of a static ccboot binary (repeat per architecture)")
	flag.Var(&docs, "doc", "a file every zip carries, e.g. LICENSE (repeatable)")
	flag.Parse()
	if o.Out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "mkpackage: usage: mkpackage -version V -epoch N -out DIR -bin GOARCH=PATH... [-doc FILE...]")
		os.Exit(2)
	}
	o.Epoch = time.Unix(*epoch, 0)
	o.Docs = docs
	o.Binaries = map[string]string{}
	for _, b := range bins {
		arch, path, ok := strings.Cut(b, "=")
		if !ok || path == "" {
			fmt.Fprintf(os.Stderr, "mkpackage: -bin %q: want GOARCH=PATH, e.g. amd64=dist/ccboot_v1.2.0_linux_amd64\n", b)
			os.Exit(2)
		}
		o.Binaries[arch] = path
	}
	names, err := distributor.Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkpackage:", err)
		os.Exit(1)
	}
	if _, err := distributor.Check(o.Out); err != nil {
		fmt.Fprintf(os.Stderr, "mkpackage: the package in %s does not pass Distributor's format check: %v\n", o.Out, err)
		os.Exit(1)
	}
	for _, n := range names {
		fmt.Println(n)
	}
}
