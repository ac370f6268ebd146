// Package claudetest serves Claude Code the way its sources do, on
// loopback: Anthropic's release channel (VERSION/manifest.json, its
// detached signature VERSION/manifest.json.sig by a key the server
// generates, VERSION/PLATFORM/claude, stable, latest) and an npm registry (package
// document, tarball with dist.integrity). Tests add versions, corrupt them
// and inject faults (5xx, truncated bodies, stalls).
package claudetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Executable is a small stand-in for Claude Code: a shell script that
// prints its version like the real one, padded to size bytes so downloads
// take more than one read.
func Executable(version string, size int) []byte {
	b := []byte("#!/bin/sh\necho '" + version + " (Claude Code)'\nexit 0\n")
	if pad := size - len(b); pad > 0 {
		b = append(b, bytes.Repeat([]byte("#"), pad)...)
	}
	return b
}

// Fault is what the server does instead of answering normally.
type Fault int

const (
	Status500 Fault = iota + 1 // answer 500
	Status404                  // answer 404
	Truncate                   // announce the full length, send half, close
	Stall                      // send half, then nothing until the client gives up
	Endless                    // send the body, then zeros until the client leaves (no Content-Length)
)

// endlessCap stops an Endless body whose client never leaves.
const endlessCap = 1 << 30

// Server is one loopback server holding a release channel under /release
// and an npm registry under /npm.
type Server struct {
	srv *httptest.Server

	mu       sync.Mutex
	exes     map[string]map[string][]byte // version -> platform -> executable
	served   map[string]map[string][]byte // bytes served instead (corruption)
	channels map[string]string
	faults   map[string][]Fault // path -> faults, one used per request
	requests map[string]int
	hidden   map[string]string // version -> platform left out of the manifest
	tarballs map[string][]byte // tarballKey -> gzip tarball, made once
	// published: version/plat -> a tarball served, and described by the
	// package document's dist.integrity, instead of the made one.
	published map[string][]byte
	tarURLs   map[string]string // version/plat -> dist.tarball instead of ours
	redirects map[string]string // path -> where a 302 sends it
	sent      map[string]int64  // path -> body bytes written

	signer  *Signer
	other   *Signer             // a key ccboot does not trust
	sigs    map[string]sigFault // version -> how its signature is served
	forged  map[string]bool     // version -> the manifest describes the served bytes
	sigFrom map[string]string   // version -> serve this other version's signature
}

// sigFault is how a version's manifest signature is served.
type sigFault int

const (
	sigGood     sigFault = iota
	sigMissing           // 404
	sigOtherKey          // a valid signature by another key
)

func tarballKey(version, plat string, exe []byte) string {
	return version + "/" + plat + "/" + SHA256(exe)
}

// tarball makes (once) the package tarball of exe; s.mu is held.
func (s *Server) tarball(version, plat string, exe []byte) []byte {
	k := tarballKey(version, plat, exe)
	if b, ok := s.tarballs[k]; ok {
		return b
	}
	b := Tarball(plat, version, exe)
	s.tarballs[k] = b
	return b
}

// New starts a server; Close it when done.
func New() *Server {
	s := newServer()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// NewTLS starts a server on https (httptest's certificate, for 127.0.0.1);
// clients trust it through CertPEM.
func NewTLS() *Server {
	s := newServer()
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

func newServer() *Server {
	return &Server{
		exes: map[string]map[string][]byte{}, served: map[string]map[string][]byte{},
		channels: map[string]string{}, faults: map[string][]Fault{}, requests: map[string]int{},
		hidden: map[string]string{}, tarballs: map[string][]byte{},
		published: map[string][]byte{}, tarURLs: map[string]string{}, redirects: map[string]string{}, sent: map[string]int64{},
		signer: NewSigner("trusted"), other: NewSigner("other"), sigs: map[string]sigFault{}, forged: map[string]bool{}, sigFrom: map[string]string{},
	}
}

// CertPEM is the server's certificate in PEM (for SSL_CERT_FILE); nil for
// a plain http server.
func (s *Server) CertPEM() []byte {
	c := s.srv.Certificate()
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// Publish makes the registry serve tgz as version's tarball for platform,
// with a dist.integrity that matches it (a hostile mirror controls both).
// version must have been added.
func (s *Server) Publish(version, platform string, tgz []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.published[version+"/"+platform] = tgz
}

// SetTarballURL makes the package document's dist.tarball of version say u.
func (s *Server) SetTarballURL(version, platform, u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tarURLs[version+"/"+platform] = u
}

// Redirect answers every request for path with a 302 to u.
func (s *Server) Redirect(path, u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redirects[path] = u
}

// Sent is how many body bytes the server wrote for path.
func (s *Server) Sent(path string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[path]
}

// Signer is the key the server signs manifests with; ccboot trusts it
// through [claude-code] signing_key (WriteKey).
func (s *Server) Signer() *Signer { return s.signer }

// OtherSigner is the untrusted key SignWithOtherKey signs with.
func (s *Server) OtherSigner() *Signer { return s.other }

// KeyPath is where WriteKey puts the server's public key in a root.
const KeyPath = "/etc/ccboot/release-key.asc"

// WriteKey writes the server's public key to root's KeyPath (mode 0644)
// and returns the --set argument that makes ccboot trust it.
func (s *Server) WriteKey(root string) (string, error) {
	p := filepath.Join(root, KeyPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(p, s.signer.PublicKey(), 0o644); err != nil {
		return "", err
	}
	return "claude-code.signing_key=" + KeyPath, nil
}

// Unsign makes version's manifest.json.sig answer 404.
func (s *Server) Unsign(version string) { s.setSig(version, sigMissing) }

// SignWithOtherKey serves a valid signature over version's manifest, made
// by a key ccboot does not trust.
func (s *Server) SignWithOtherKey(version string) { s.setSig(version, sigOtherKey) }

func (s *Server) setSig(version string, f sigFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sigs[version] = f
}

// Forge serves served for version/platform with a manifest that describes
// it (checksum and size match), while the signature stays the one over the
// genuine manifest: a channel that changed the manifest after signing.
func (s *Server) Forge(version, platform string, served []byte) {
	s.Corrupt(version, platform, served)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forged[version] = true
}

// ReplaySignature serves from's (valid) manifest signature as version's.
func (s *Server) ReplaySignature(version, from string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sigFrom[version] = from
}

// SigPath is the release channel's path of a manifest signature.
func SigPath(version string) string { return "/release/" + version + "/manifest.json.sig" }

// Close stops the server.
func (s *Server) Close() { s.srv.CloseClientConnections(); s.srv.Close() }

// ReleaseURL is the base of the release channel ([claude-code] release_url).
func (s *Server) ReleaseURL() string { return s.srv.URL + "/release" }

// RegistryURL is the npm registry ([claude-code] registry).
func (s *Server) RegistryURL() string { return s.srv.URL + "/npm" }

// Add publishes version for platform with the given executable.
func (s *Server) Add(version, platform string, exe []byte) {
	tb := Tarball(platform, version, exe) // made here, not while a client waits
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tarballs[tarballKey(version, platform, exe)] = tb
	if s.exes[version] == nil {
		s.exes[version] = map[string][]byte{}
	}
	s.exes[version][platform] = exe
}

// Corrupt makes the server send served for version/platform while the
// manifest (and the npm integrity) still describe the published bytes.
func (s *Server) Corrupt(version, platform string, served []byte) {
	tb := Tarball(platform, version, served)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tarballs[tarballKey(version, platform, served)] = tb
	if s.served[version] == nil {
		s.served[version] = map[string][]byte{}
	}
	s.served[version][platform] = served
}

// HidePlatform leaves platform out of version's manifest.
func (s *Server) HidePlatform(version, platform string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hidden[version] = platform
}

// SetChannel makes /release/NAME (and the npm dist-tag NAME) say version.
func (s *Server) SetChannel(name, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[name] = version
}

// Fail queues faults for the request path (e.g. "/release/1.0.0/linux-x64/claude"),
// one per request, after which the path is served normally.
func (s *Server) Fail(path string, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[path] = append(s.faults[path], faults...)
}

// Requests is how many requests path received.
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

// ExePath is the release channel's path of an executable.
func ExePath(version, platform string) string {
	return "/release/" + version + "/" + platform + "/claude"
}

// TarballPath is the npm registry's path of a platform package tarball.
func TarballPath(version, platform string) string {
	return "/npm/@anthropic-ai/claude-code-" + platform + "/-/claude-code-" + platform + "-" + version + ".tgz"
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	s.mu.Lock()
	s.requests[p]++
	var fault Fault
	if q := s.faults[p]; len(q) > 0 {
		fault, s.faults[p] = q[0], q[1:]
	}
	redirect := s.redirects[p]
	s.mu.Unlock()
	if redirect != "" {
		http.Redirect(w, r, redirect, http.StatusFound)
		return
	}
	switch fault {
	case Status500:
		http.Error(w, "injected", http.StatusInternalServerError)
		return
	case Status404:
		http.NotFound(w, r)
		return
	}
	body, ok := s.body(p)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch fault {
	case Endless:
		w.WriteHeader(http.StatusOK)
		n, _ := w.Write(body)
		s.count(p, n)
		zeros := make([]byte, 64<<10)
		for total := int64(n); total < endlessCap; total += int64(len(zeros)) {
			n, err := w.Write(zeros)
			s.count(p, n)
			if err != nil {
				return
			}
		}
		return
	case Truncate, Stall:
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		if fault == Stall {
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
		}
		// Returning with fewer bytes than announced: the server closes
		// the connection and the client sees an unexpected EOF.
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	n, _ := w.Write(body)
	s.count(p, n)
}

func (s *Server) count(p string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent[p] += int64(n)
}

func (s *Server) body(p string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rest, ok := strings.CutPrefix(p, "/release/"); ok {
		parts := strings.Split(rest, "/")
		switch {
		case len(parts) == 1:
			v, ok := s.channels[parts[0]]
			return []byte(v + "\n"), ok
		case len(parts) == 2 && parts[1] == "manifest.json":
			return s.manifest(parts[0], s.forged[parts[0]])
		case len(parts) == 2 && parts[1] == "manifest.json.sig":
			return s.signature(parts[0])
		case len(parts) == 3 && parts[2] == "claude":
			return s.exe(parts[0], parts[1])
		}
		return nil, false
	}
	if rest, ok := strings.CutPrefix(p, "/npm/"); ok {
		pkg, tarball, isTar := strings.Cut(rest, "/-/")
		pkg = strings.Replace(pkg, "%2f", "/", 1)
		pkg = strings.Replace(pkg, "%2F", "/", 1)
		plat, ok := strings.CutPrefix(pkg, "@anthropic-ai/claude-code-")
		if !ok {
			return nil, false
		}
		if !isTar {
			return s.packument(plat)
		}
		v, ok := strings.CutPrefix(tarball, "claude-code-"+plat+"-")
		if !ok {
			return nil, false
		}
		v = strings.TrimSuffix(v, ".tgz")
		if tgz, ok := s.published[v+"/"+plat]; ok {
			return tgz, true
		}
		exe, ok := s.exe(v, plat)
		if !ok {
			return nil, false
		}
		return s.tarball(v, plat, exe), true
	}
	return nil, false
}

func (s *Server) exe(version, plat string) ([]byte, bool) {
	if b, ok := s.served[version][plat]; ok {
		return b, true
	}
	b, ok := s.exes[version][plat]
	return b, ok
}

type platformSum struct {
	Checksum string `json:"checksum"`
	Size     int    `json:"size"`
}

// signature is version's manifest.json.sig; s.mu is held.
func (s *Server) signature(version string) ([]byte, bool) {
	signed := version
	if from, ok := s.sigFrom[version]; ok {
		signed = from
	}
	m, ok := s.manifest(signed, false)
	if !ok {
		return nil, false
	}
	switch s.sigs[version] {
	case sigMissing:
		return nil, false
	case sigOtherKey:
		return s.other.Sign(m), true
	}
	return s.signer.Sign(m), true
}

// manifest is version's manifest.json: describing the published bytes, or
// with served, the bytes served instead; s.mu is held.
func (s *Server) manifest(version string, served bool) ([]byte, bool) {
	exes, ok := s.exes[version]
	if !ok {
		return nil, false
	}
	if served {
		exes = maps.Clone(exes)
		maps.Copy(exes, s.served[version])
	}
	m := struct {
		Version   string                 `json:"version"`
		BuildDate string                 `json:"buildDate"`
		Platforms map[string]platformSum `json:"platforms"`
	}{Version: version, BuildDate: "2026-11-01T00:00:00Z", Platforms: map[string]platformSum{}}
	for plat, b := range exes {
		if s.hidden[version] == plat {
			continue
		}
		sum := sha256.Sum256(b)
		m.Platforms[plat] = platformSum{Checksum: hex.EncodeToString(sum[:]), Size: len(b)}
	}
	data, _ := json.Marshal(m)
	return data, true
}

func (s *Server) packument(plat string) ([]byte, bool) {
	name := "@anthropic-ai/claude-code-" + plat
	type dist struct {
		Tarball   string `json:"tarball"`
		Integrity string `json:"integrity"`
	}
	type ver struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Dist    dist   `json:"dist"`
	}
	doc := struct {
		Name     string            `json:"name"`
		DistTags map[string]string `json:"dist-tags"`
		Versions map[string]ver    `json:"versions"`
	}{Name: name, DistTags: map[string]string{}, Versions: map[string]ver{}}
	for v, exes := range s.exes {
		exe, ok := exes[plat]
		if !ok {
			continue
		}
		// The integrity describes the published bytes, whatever is served.
		d := dist{Tarball: s.srv.URL + TarballPath(v, plat), Integrity: Integrity(s.tarball(v, plat, exe))}
		if tgz, ok := s.published[v+"/"+plat]; ok {
			d.Integrity = Integrity(tgz)
		}
		if u, ok := s.tarURLs[v+"/"+plat]; ok {
			d.Tarball = u
		}
		doc.Versions[v] = ver{Name: name, Version: v, Dist: d}
	}
	if len(doc.Versions) == 0 {
		return nil, false
	}
	for k, v := range s.channels {
		doc.DistTags[k] = v
	}
	data, _ := json.Marshal(doc)
	return data, true
}

// Tarball is the platform package as npm pack makes it: package/claude
// (the executable), package/package.json, package/README.md. The bytes are
// deterministic, so the integrity of the same content is stable.
func Tarball(plat, version string, exe []byte) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mtime := time.Date(1985, 10, 26, 8, 15, 0, 0, time.UTC)
	add := func(name string, mode int64, data []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg})
		_, _ = tw.Write(data)
	}
	add("package/package.json", 0o644, []byte(`{"name":"@anthropic-ai/claude-code-`+plat+`","version":"`+version+`","files":["claude","README.md"]}`))
	add("package/claude", 0o755, exe)
	add("package/README.md", 0o644, []byte("Native binary for Claude Code\n"))
	_ = tw.Close()
	_ = gz.Close()
	return buf.Bytes()
}

// SparseTarball is a tarball (a few hundred bytes) whose package/claude is
// a PAX GNU sparse 1.0 entry claiming claimed bytes: one data byte at its
// end, holes before it. archive/tar reports it as a regular file of
// claimed bytes and expands the holes into zeros. tar.Writer drops
// GNU.sparse.* records, so the PAX header is written as a regular entry
// and retyped to 'x'.
func SparseTarball(claimed int64) []byte {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	mtime := time.Date(1985, 10, 26, 8, 15, 0, 0, time.UTC)
	var pax []byte
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", "package/claude"}, {"GNU.sparse.realsize", fmt.Sprint(claimed)}} {
		pax = append(pax, paxRecord(kv[0], kv[1])...)
	}
	_ = tw.WriteHeader(&tar.Header{Name: "PaxHeaders/claude", Mode: 0o644, Size: int64(len(pax)), Typeflag: tar.TypeReg, ModTime: mtime, Format: tar.FormatUSTAR})
	_, _ = tw.Write(pax)
	_ = tw.Flush()
	retype(raw.Bytes()[:512], tar.TypeXHeader)
	sparseMap := make([]byte, 512)
	copy(sparseMap, fmt.Sprintf("1\n%d\n1\n", claimed-1))
	data := append(sparseMap, 'x')
	_ = tw.WriteHeader(&tar.Header{Name: "package/GNUSparseFile.0/claude", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: mtime, Format: tar.FormatUSTAR})
	_, _ = tw.Write(data)
	_ = tw.Close()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	_, _ = gz.Write(raw.Bytes())
	_ = gz.Close()
	return buf.Bytes()
}

// paxRecord is one "LEN key=value\n" record; LEN counts itself.
func paxRecord(k, v string) []byte {
	body := " " + k + "=" + v + "\n"
	n := len(body) + 1
	for len(fmt.Sprint(n))+len(body) != n {
		n++
	}
	return []byte(fmt.Sprint(n) + body)
}

// retype sets a ustar header block's type flag and its checksum.
func retype(block []byte, flag byte) {
	block[156] = flag
	copy(block[148:156], "        ")
	sum := 0
	for _, b := range block {
		sum += int(b)
	}
	copy(block[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// OversizedTarball is a tarball whose regular package/claude declares
// claimed bytes; the archive ends after the header (a reader that trusts
// the header commits to claimed bytes before it sees any of them).
func OversizedTarball(claimed int64) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	_ = tw.WriteHeader(&tar.Header{Name: "package/claude", Mode: 0o755, Size: claimed, Typeflag: tar.TypeReg,
		ModTime: time.Date(1985, 10, 26, 8, 15, 0, 0, time.UTC)})
	_ = tw.Flush() // the header only; no Close, which would want the data
	_ = gz.Close()
	return buf.Bytes()
}

// Integrity is npm's dist.integrity of data.
func Integrity(data []byte) string {
	sum := sha512.Sum512(data)
	return "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
}

// SHA256 is the hex SHA-256 of data.
func SHA256(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ELFHeader is the start of a little-endian ELF executable for arch
// ("x64" or "arm64"), enough for ccboot to tell a root's architecture.
func ELFHeader(arch string) []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 2, 1, 1
	h[16] = 2
	machine := map[string]byte{"x64": 0x3e, "arm64": 0xb7}[arch]
	h[18] = machine
	return h
}

// Preinstall lays out what ccboot leaves after installing version under
// root's prefix (an image that already carries Claude Code): the
// executable, its install record and the PREFIX/bin/claude link. The record
// fields are ccboot's; a mismatch makes Check ask for a reinstall.
func Preinstall(root, prefix, version string, exe []byte) error {
	dir := filepath.Join(root, prefix, "lib/claude-code/versions", version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p := filepath.Join(dir, "claude")
	if err := os.WriteFile(p, exe, 0o755); err != nil {
		return err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	rec, _ := json.Marshal(map[string]any{
		"version": version, "source": "release", "platform": "linux-x64", "url": "preinstalled",
		"sha256": SHA256(exe), "size": fi.Size(), "mtime_ns": fi.ModTime().UnixNano(),
	})
	if err := os.WriteFile(filepath.Join(dir, "install.json"), rec, 0o644); err != nil {
		return err
	}
	bin := filepath.Join(root, prefix, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	return os.Symlink("../lib/claude-code/versions/"+version+"/claude", filepath.Join(bin, "claude"))
}
