// Package distributor builds ccboot's AWS Systems Manager Distributor
// package: a manifest.json and one zip per platform and architecture, each
// with install.sh, update.sh, uninstall.sh, the binary and its SHA-256
// (ccboot.sha256, which install.sh checks). It also checks a built package
// against Distributor's documented format. make dist runs it through
// mkpackage; it is a packaging tool, never linked into ccboot.
//
// The format, from AWS's "Create a package in Distributor" (advanced)
// https://docs.aws.amazon.com/systems-manager/latest/userguide/distributor-working-with-packages-create.html:
//   - "In this release, the schema version is always 2.0."
//   - "A version value can contain letters, numbers, underscores, hyphens,
//     and periods, and be a maximum of 128 characters in length."
//   - "The platform-version can be the wildcard value, _any."
//   - "Each file entry requires the file name and sha256 hash value checksum."
//   - "all files that you attach to your package must be listed in the Files
//     section of the manifest ... The maximum number of files that you can
//     attach to a single document is 20. The maximum size of each file is 1 GB."
//   - "Linux-based instances require shell scripts (scripts named install.sh
//     and uninstall.sh)" and, optionally, update.sh for "In-place update".
//   - "A newer version can use the same S3 bucket, but must have a URL with a
//     different file name shown at the end" (Add a package version): so the
//     zips carry the version in their names.
//
// Platform and architecture names are the "Code value in manifest file"
// column of "Supported package platforms and architectures"
// (https://docs.aws.amazon.com/systems-manager/latest/userguide/distributor.html#what-is-a-package-platforms).
package distributor

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

//go:embed scripts/install.sh scripts/update.sh scripts/uninstall.sh
var scripts embed.FS

// ManifestName is the manifest's file name beside the zips; `aws ssm
// create-document --content file://manifest.json` reads it.
const ManifestName = "manifest.json"

// Publisher is the manifest's optional publisher.
const Publisher = "ccboot"

// Entries every zip holds, besides the documents the build adds.
const (
	BinaryName  = "ccboot"
	HashName    = "ccboot.sha256"
	InstallName = "install.sh"
	UpdateName  = "update.sh"
	RemoveName  = "uninstall.sh"
)

// Target is one zip: the platforms (manifest platform name and platform
// version) it serves. The binary is static, so the zips of one architecture
// differ only in name; each platform family still gets its own zip, so a
// family can later change its scripts without touching the other's.
type Target struct {
	Name      string // in the zip's name
	Platforms [][2]string
}

// Targets: Amazon Linux 2023 (VERSION_ID 2023), and Debian and Ubuntu of
// any release (apt, systemd, the same install path).
var Targets = []Target{
	{Name: "al2023", Platforms: [][2]string{{"amazon", "2023"}}},
	{Name: "debian", Platforms: [][2]string{{"debian", "_any"}, {"ubuntu", "_any"}}},
}

// Arch maps GOARCH to Distributor's architecture names.
var Arch = map[string]string{"amd64": "x86_64", "arm64": "arm64"}

// Manifest is Distributor's package manifest, schema 2.0.
type Manifest struct {
	SchemaVersion string `json:"schemaVersion"`
	Version       string `json:"version"`
	Publisher     string `json:"publisher,omitempty"`
	// platform -> platform version -> architecture -> the zip.
	Packages map[string]map[string]map[string]FileRef `json:"packages"`
	Files    map[string]File                          `json:"files"`
}

// FileRef names a zip in the packages section.
type FileRef struct {
	File string `json:"file"`
}

// File is a zip's entry in the files section.
type File struct {
	Checksums struct {
		SHA256 string `json:"sha256"`
	} `json:"checksums"`
}

// Options says what Build packs.
type Options struct {
	Version  string            // the package version (Distributor's version name)
	Epoch    time.Time         // every zip entry's mtime (SOURCE_DATE_EPOCH)
	Binaries map[string]string // GOARCH -> the static ccboot binary
	Docs     []string          // more files for every zip (LICENSE, THIRD_PARTY_LICENSES), 0644
	Out      string            // directory for manifest.json and the zips
}

var versionName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// ZipName is the zip for one target and GOARCH.
func ZipName(version, target, goarch string) string {
	return fmt.Sprintf("ccboot_%s_%s_%s.zip", version, target, Arch[goarch])
}

// Build writes the zips and manifest.json into o.Out and returns their
// names, manifest last. The same inputs give the same bytes: entries are
// sorted, with fixed times and modes, and JSON keys are sorted.
func Build(o Options) ([]string, error) {
	if !versionName.MatchString(o.Version) {
		return nil, fmt.Errorf("distributor: version %q: Distributor allows only letters, digits, _ . - and at most 128 characters; set VERSION to such a name", o.Version)
	}
	if len(o.Binaries) == 0 {
		return nil, errors.New("distributor: no binary given (-bin GOARCH=PATH)")
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("distributor: %w", err)
	}
	m := Manifest{SchemaVersion: "2.0", Version: o.Version, Publisher: Publisher,
		Packages: map[string]map[string]map[string]FileRef{}, Files: map[string]File{}}
	goarches := make([]string, 0, len(o.Binaries))
	for goarch := range o.Binaries {
		if Arch[goarch] == "" {
			return nil, fmt.Errorf("distributor: GOARCH %q has no Distributor architecture (use amd64 or arm64)", goarch)
		}
		goarches = append(goarches, goarch)
	}
	sort.Strings(goarches)
	var written []string
	for _, goarch := range goarches {
		bin, err := os.ReadFile(o.Binaries[goarch])
		if err != nil {
			return nil, fmt.Errorf("distributor: %w", err)
		}
		for _, t := range Targets {
			name := ZipName(o.Version, t.Name, goarch)
			data, err := zipBytes(bin, o.Docs, o.Epoch)
			if err != nil {
				return nil, fmt.Errorf("distributor: %s: %w", name, err)
			}
			if err := writeAtomic(filepath.Join(o.Out, name), data); err != nil {
				return nil, err
			}
			var f File
			f.Checksums.SHA256 = sha256Hex(data)
			m.Files[name] = f
			for _, p := range t.Platforms {
				if m.Packages[p[0]] == nil {
					m.Packages[p[0]] = map[string]map[string]FileRef{}
				}
				if m.Packages[p[0]][p[1]] == nil {
					m.Packages[p[0]][p[1]] = map[string]FileRef{}
				}
				m.Packages[p[0]][p[1]][Arch[goarch]] = FileRef{File: name}
			}
			written = append(written, name)
		}
	}
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeAtomic(filepath.Join(o.Out, ManifestName), append(js, '\n')); err != nil {
		return nil, err
	}
	sort.Strings(written)
	return append(written, ManifestName), nil
}

type entry struct {
	name string
	mode fs.FileMode
	data []byte
}

func zipBytes(bin []byte, docs []string, epoch time.Time) ([]byte, error) {
	entries := []entry{
		{BinaryName, 0o755, bin},
		{HashName, 0o644, []byte(sha256Hex(bin) + "  " + BinaryName + "\n")},
	}
	for _, s := range []string{InstallName, UpdateName, RemoveName} {
		b, err := scripts.ReadFile("scripts/" + s)
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{s, 0o755, b})
	}
	for _, d := range docs {
		b, err := os.ReadFile(d)
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{filepath.Base(d), 0o644, b})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: epoch.UTC()}
		h.SetMode(e.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeAtomic writes a temp file beside path, syncs it and renames it over.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("distributor: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename: nothing left to remove
	if _, err = f.Write(data); err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("distributor: write %s: %w", path, err)
	}
	return nil
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Documented names (see the package comment).
var (
	platformNames = map[string]bool{"windows": true, "debian": true, "ubuntu": true, "redhat": true, "centos": true,
		"amazon": true, "suse": true, "opensuse": true, "opensuseleap": true, "oracle": true}
	archNames       = map[string]bool{"x86_64": true, "386": true, "arm64": true, "_any": true}
	platformVersion = regexp.MustCompile(`^(_any|[0-9][0-9A-Za-z.]*)$`)
	sha256Pattern   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

const (
	maxFiles    = 20
	maxFileSize = 1 << 30
)

// Check reads dir/manifest.json and checks it against Distributor's
// documented format: schema 2.0, a valid version name, only documented
// platform and architecture names, every zip the packages name listed in
// files and every listed zip named, present in dir with that SHA-256, at
// most 20 of at most 1 GB. Each zip must hold install.sh, uninstall.sh and
// a ccboot whose SHA-256 is the one in its ccboot.sha256. Unknown keys are
// errors: a typo would otherwise pass here and fail at create-document.
func Check(dir string) (*Manifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.SchemaVersion != "2.0" {
		bad("schemaVersion %q, want \"2.0\"", m.SchemaVersion)
	}
	if !versionName.MatchString(m.Version) {
		bad("version %q is not 1-128 letters, digits, _ . -", m.Version)
	}
	if len(m.Packages) == 0 {
		bad("packages is empty")
	}
	named := map[string]bool{}
	for platform, versions := range m.Packages {
		if !platformNames[platform] {
			bad("packages: platform %q is not one of Distributor's", platform)
		}
		if len(versions) == 0 {
			bad("packages.%s is empty", platform)
		}
		for version, arches := range versions {
			if !platformVersion.MatchString(version) {
				bad("packages.%s: platform version %q is neither _any nor a release version", platform, version)
			}
			if len(arches) == 0 {
				bad("packages.%s.%s is empty", platform, version)
			}
			for arch, ref := range arches {
				if !archNames[arch] {
					bad("packages.%s.%s: architecture %q is not one of Distributor's", platform, version, arch)
				}
				if ref.File == "" {
					bad("packages.%s.%s.%s has no file", platform, version, arch)
				}
				named[ref.File] = true
			}
		}
	}
	if len(m.Files) > maxFiles {
		bad("files lists %d files, Distributor attaches at most %d", len(m.Files), maxFiles)
	}
	for name := range named {
		if _, ok := m.Files[name]; !ok {
			bad("packages name %s, which files does not list", name)
		}
	}
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := m.Files[name]
		if !named[name] {
			bad("files lists %s, which no platform uses", name)
		}
		if name != filepath.Base(name) || !strings.HasSuffix(name, ".zip") {
			bad("files: %q is not a .zip file name", name)
			continue
		}
		if !sha256Pattern.MatchString(f.Checksums.SHA256) {
			bad("files.%s: sha256 %q is not 64 lowercase hex digits", name, f.Checksums.SHA256)
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			bad("files.%s: %v", name, err)
			continue
		}
		if len(data) > maxFileSize {
			bad("%s is %d bytes, over Distributor's 1 GB", name, len(data))
		}
		if got := sha256Hex(data); got != f.Checksums.SHA256 {
			bad("files.%s: sha256 %s, the file has %s", name, f.Checksums.SHA256, got)
		}
		if err := checkZip(data); err != nil {
			bad("%s: %v", name, err)
		}
	}
	return &m, errors.Join(errs...)
}

// checkZip wants the documented scripts and a binary that matches its
// hash file.
func checkZip(data []byte) error {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return err
	}
	content := map[string][]byte{}
	for _, f := range zr.File {
		if strings.Contains(f.Name, "/") {
			return fmt.Errorf("entry %s is in a folder; Distributor runs install.sh from the zip's top", f.Name)
		}
		r, err := f.Open()
		if err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
		r.Close()
		if err != nil {
			return err
		}
		content[f.Name] = b
	}
	for _, want := range []string{InstallName, RemoveName, BinaryName, HashName} {
		if _, ok := content[want]; !ok {
			return fmt.Errorf("no %s", want)
		}
	}
	if want := sha256Hex(content[BinaryName]) + "  " + BinaryName + "\n"; string(content[HashName]) != want {
		return fmt.Errorf("%s says %q, the binary's line is %q", HashName, content[HashName], want)
	}
	return nil
}
