package steps

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// maxClaudeBytes bounds the executable a source may declare (today's is
// about 402 MB) and the bytes an npm tarball may decompress to, so a small
// hostile tarball cannot make ccboot write or read without end.
const maxClaudeBytes int64 = 2 << 30

// claudeDiskMargin is left free on the prefix's filesystem beyond the
// executable's declared size: the steps and services running beside the
// download (state file, journal, usermod) must not see ENOSPC.
const claudeDiskMargin int64 = 64 << 20

// claudeSource fetches Claude Code from the configured source: Anthropic's
// release channel or an npm registry. Neither runs node or npm.
type claudeSource struct {
	env    *bootstrap.Env
	client *http.Client
	sleep  func(context.Context, time.Duration) error
	// maxBytes is maxClaudeBytes; unit tests lower it.
	maxBytes int64
	// plainHTTP: the configured base URL is itself plain http (which the
	// config allows only to a loopback IP), so redirects and
	// dist.tarball may lead to plain http on a loopback IP too. From an
	// https source they may not: that would let a mirror point root's
	// downloader at a local service (a Docker API on 127.0.0.1:2375).
	plainHTTP bool
}

// refusedRedirect is CheckRedirect's refusal; retrying cannot help.
type refusedRedirect struct{ msg string }

func (r *refusedRedirect) Error() string { return r.msg }

func newClaudeSource(env *bootstrap.Env, sleep func(context.Context, time.Duration) error, maxBytes int64) claudeSource {
	base := env.Config.ClaudeReleaseURL
	if env.Config.ClaudeSource == "npm" {
		base = env.Config.ClaudeRegistry
	}
	plainHTTP := false
	if u, err := url.Parse(base); err == nil {
		plainHTTP = u.Scheme == "http" && loopbackURL(u)
	}
	if maxBytes <= 0 {
		maxBytes = maxClaudeBytes
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: env.Config.ClaudeStall,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
	}
	client := &http.Client{
		Transport: tr,
		// A mirror may redirect tarballs to a CDN; never to plain http.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("more than 5 redirects")
			}
			if !allowedURL(req.URL, plainHTTP) {
				return &refusedRedirect{fmt.Sprintf("refusing a redirect from %s to %s: not https (plain http is followed only to a loopback IP, from a plain-http loopback [claude-code] release_url or registry); fix the mirror or the configured URL",
					printableShort(via[len(via)-1].URL.Redacted()), printableShort(req.URL.Redacted()))}
			}
			return nil
		},
	}
	return claudeSource{env: env, client: client, sleep: sleep, maxBytes: maxBytes, plainHTTP: plainHTTP}
}

// allowedURL: https, or plain http to a loopback IP when the configured
// source is itself plain http on loopback.
func allowedURL(u *url.URL, plainHTTP bool) bool {
	return u.Scheme == "https" || (plainHTTP && u.Scheme == "http" && loopbackURL(u))
}

func loopbackURL(u *url.URL) bool {
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// errNotFound: the server answered 404; retrying cannot help.
var errNotFound = errors.New("not found (HTTP 404)")

// errStalled cancels a request when no byte arrived for [claude-code]
// stall_timeout.
var errStalled = errors.New("stalled")

// permanent marks an error retrying cannot fix (a checksum mismatch, a full
// disk, a 4xx answer).
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// retry runs one attempt up to [claude-code] retries times, with backoff,
// while it fails on the network or with HTTP 5xx.
func (s claudeSource) retry(ctx context.Context, what string, attempt func(context.Context) error) error {
	attempts := max(s.env.Config.NpmRetries, 1)
	wait := 2 * time.Second
	for i := 1; ; i++ {
		err := attempt(ctx)
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) || errors.Is(err, errNotFound) || ctx.Err() != nil {
			return err
		}
		if i >= attempts {
			return fmt.Errorf("%w (attempt %d of %d); check that this instance reaches %s (route, DNS, proxy) and rerun, or raise [claude-code] retries", err, i, attempts, what)
		}
		s.env.Log.Warn("download failed; retrying", zap.String("what", what), zap.Int("attempt", i), zap.Duration("wait", wait), zap.Error(err))
		if s.sleep != nil {
			err = s.sleep(ctx, wait)
		} else {
			err = sleepCtx(ctx, wait)
		}
		if err != nil {
			return fmt.Errorf("claude-code: waiting to retry: %w", err)
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// get makes one GET and hands the body to read; a stall watchdog cancels
// the request when no byte arrives for stall_timeout.
func (s claudeSource) get(ctx context.Context, rawURL, accept string, read func(io.Reader) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := s.env.Config.ClaudeStall
	timer := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer timer.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return permanent{fmt.Errorf("claude-code: %w", err)}
	}
	req.Header.Set("User-Agent", "ccboot")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := s.client.Do(req)
	var refused *refusedRedirect
	if errors.As(err, &refused) {
		return permanent{fmt.Errorf("claude-code: GET %s: %w", rawURL, refused)}
	}
	if err != nil {
		return s.netErr(ctx, rawURL, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("claude-code: GET %s: %w", rawURL, errNotFound)
	case resp.StatusCode >= 500:
		return fmt.Errorf("claude-code: GET %s: HTTP %s", rawURL, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return permanent{fmt.Errorf("claude-code: GET %s: HTTP %s", rawURL, resp.Status)}
	}
	body := &watchdog{r: resp.Body, timer: timer, stall: stall}
	if err := read(body); err != nil {
		var p permanent
		if errors.As(err, &p) {
			return err
		}
		return s.netErr(ctx, rawURL, err)
	}
	return nil
}

func (s claudeSource) netErr(ctx context.Context, rawURL string, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return fmt.Errorf("claude-code: GET %s: no data for %s ([claude-code] stall_timeout)", rawURL, s.env.Config.ClaudeStall)
	}
	return fmt.Errorf("claude-code: GET %s: %w", rawURL, err)
}

// watchdog restarts the stall timer on every read that brings bytes.
type watchdog struct {
	r     io.Reader
	timer *time.Timer
	stall time.Duration
}

func (w *watchdog) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.timer.Reset(w.stall)
	}
	return n, err
}

// getSmall reads a small document (manifest, channel, package document).
func (s claudeSource) getSmall(ctx context.Context, rawURL, accept string, limit int64) ([]byte, error) {
	var out []byte
	err := s.retry(ctx, rawURL, func(ctx context.Context) error {
		return s.get(ctx, rawURL, accept, func(r io.Reader) error {
			data, err := io.ReadAll(io.LimitReader(r, limit+1))
			if err != nil {
				return err
			}
			if int64(len(data)) > limit {
				return permanent{fmt.Errorf("claude-code: %s is larger than %d bytes; is [claude-code] release_url or registry right?", rawURL, limit)}
			}
			out = data
			return nil
		})
	})
	return out, err
}

var claudeVersionText = versionDirPattern

// resolve turns [claude-code] version into a version number: a channel
// name (stable, latest) costs one request.
func (s claudeSource) resolve(ctx context.Context) (string, error) {
	v := s.env.Config.ClaudeVersion
	if v != "stable" && v != "latest" {
		return v, nil
	}
	switch s.env.Config.ClaudeSource {
	case "npm":
		plat, err := claudePlatform(s.env)
		if err != nil {
			return "", err
		}
		doc, err := s.packument(ctx, plat)
		if err != nil {
			return "", err
		}
		got := doc.DistTags[v]
		if got == "" {
			return "", fmt.Errorf("claude-code: the npm registry has no dist-tag %q for Claude Code; set [claude-code] version to a version number", v)
		}
		if !claudeVersionText.MatchString(got) {
			return "", fmt.Errorf("claude-code: dist-tag %s is %q, not a version number", v, got)
		}
		return got, nil
	default:
		u := s.env.Config.ClaudeReleaseURL + "/" + v
		data, err := s.getSmall(ctx, u, "", 256)
		if err != nil {
			return "", fmt.Errorf("%w; or set [claude-code] version to a version number", err)
		}
		got := strings.TrimSpace(string(data))
		if !claudeVersionText.MatchString(got) {
			return "", fmt.Errorf("claude-code: %s says %q, not a version number; check [claude-code] release_url", u, printableShort(got))
		}
		return got, nil
	}
}

// fetch downloads version for platform into name (staged, then committed
// only when verified) and returns what it verified.
func (s claudeSource) fetch(ctx context.Context, version, plat, name string) (claudeRecord, error) {
	if s.env.Config.ClaudeSource == "npm" {
		return s.fetchNpm(ctx, version, plat, name)
	}
	return s.fetchRelease(ctx, version, plat, name)
}

// releaseManifest is VERSION/manifest.json of the release channel.
type releaseManifest struct {
	Version   string `json:"version"`
	Platforms map[string]struct {
		Checksum string `json:"checksum"`
		Size     int64  `json:"size"`
	} `json:"platforms"`
}

func (s claudeSource) fetchRelease(ctx context.Context, version, plat, name string) (claudeRecord, error) {
	base := s.env.Config.ClaudeReleaseURL
	mURL := base + "/" + version + "/manifest.json"
	data, err := s.getSmall(ctx, mURL, "", 1<<20)
	if errors.Is(err, errNotFound) {
		return claudeRecord{}, fmt.Errorf("claude-code: version %s is unknown to the release channel (%s: 404); set [claude-code] version to a released version", version, mURL)
	}
	if err != nil {
		return claudeRecord{}, err
	}
	// Nothing in the manifest is trusted before its signature is checked.
	sig, signer, err := s.manifestSignature(ctx, version, mURL, data)
	if err != nil {
		return claudeRecord{}, err
	}
	var m releaseManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return claudeRecord{}, fmt.Errorf("claude-code: %s is not a release manifest: %v", mURL, err)
	}
	p, ok := m.Platforms[plat]
	if !ok {
		var have []string
		for k := range m.Platforms {
			have = append(have, k)
		}
		sort.Strings(have)
		return claudeRecord{}, fmt.Errorf("claude-code: %s has no build for %s (it has: %s); pick a version that ships for this platform", mURL, plat, strings.Join(have, ", "))
	}
	want := strings.ToLower(p.Checksum)
	if len(want) != 64 || p.Size <= 0 {
		return claudeRecord{}, fmt.Errorf("claude-code: %s: platform %s has no valid sha256 checksum and size", mURL, plat)
	}
	exeURL := base + "/" + version + "/" + plat + "/claude"
	if err := s.roomFor(name, p.Size, exeURL); err != nil {
		return claudeRecord{}, err
	}
	var got string
	err = s.retry(ctx, exeURL, func(ctx context.Context) error {
		return s.get(ctx, exeURL, "", func(r io.Reader) error {
			h := sha256.New()
			_, err := s.stream(name, io.TeeReader(r, h), p.Size, exeURL, func(n int64) error {
				got = hex.EncodeToString(h.Sum(nil))
				switch {
				case n != p.Size:
					return permanent{fmt.Errorf("claude-code: %s: got %d bytes, the manifest says %d", exeURL, n, p.Size)}
				case got != want:
					return permanent{fmt.Errorf("claude-code: checksum mismatch for %s: sha256 %s, the manifest %s says %s; nothing was installed", exeURL, got, mURL, want)}
				}
				return nil
			})
			return err
		})
	})
	if errors.Is(err, errNotFound) {
		return claudeRecord{}, fmt.Errorf("claude-code: %s: 404, though the manifest lists %s; the release channel is incomplete, try again later or set [claude-code] version", exeURL, plat)
	}
	if err != nil {
		return claudeRecord{}, err
	}
	rec := claudeRecord{URL: exeURL, SHA256: got}
	if sig != nil {
		rec.Signer, rec.Manifest, rec.Signature = signer, data, sig
	}
	return rec, nil
}

// roomFor refuses, before anything is staged, an executable that declares
// more than maxBytes or more than the free space of name's filesystem less
// claudeDiskMargin.
func (s claudeSource) roomFor(name string, size int64, src string) error {
	if size > s.maxBytes {
		return permanent{fmt.Errorf("claude-code: %s declares %d bytes for Claude Code, more than ccboot's cap of %s; nothing was downloaded, check [claude-code] release_url or registry", src, size, humanBytes(s.maxBytes))}
	}
	dir := path.Dir(name)
	free, err := s.env.Sys.FreeSpace(dir)
	if err != nil {
		return permanent{fmt.Errorf("claude-code: %w", err)}
	}
	if free < size+claudeDiskMargin {
		return permanent{fmt.Errorf("claude-code: %s needs %s plus %s to spare on the filesystem of %s, which has %s free; nothing was downloaded, free space there and rerun",
			src, humanBytes(size), humanBytes(claudeDiskMargin), s.env.Sys.Path(dir), humanBytes(free))}
	}
	return nil
}

// stream copies at most size bytes of r into a staged file for name (more
// is refused: a body longer than src declared never fills the disk); check
// sees the byte count once r is exhausted and decides whether the file is
// committed.
func (s claudeSource) stream(name string, r io.Reader, size int64, src string, check func(int64) error) (int64, error) {
	st, err := s.env.Sys.Stage(name)
	if err != nil {
		return 0, permanent{fmt.Errorf("claude-code: %w", err)}
	}
	// A failed write (a full disk) is not worth retrying; a failed read is.
	w := writerFunc(func(p []byte) (int, error) {
		n, err := st.Write(p)
		if err != nil {
			err = permanent{err}
		}
		return n, err
	})
	n, err := io.CopyBuffer(w, io.LimitReader(r, size+1), make([]byte, 256<<10))
	fsroot.CrashPoint("claude/downloaded", name)
	if err == nil && n > size {
		st.Abort()
		return n, permanent{fmt.Errorf("claude-code: %s sends more than the %d bytes declared for it; nothing was installed, check [claude-code] release_url or registry", src, size)}
	}
	if err != nil {
		st.Abort()
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			return n, permanent{fmt.Errorf("claude-code: %w; free space under %s and rerun", err, s.env.Sys.Path(s.env.Config.ClaudePrefix))}
		}
		return n, err
	}
	if err := check(n); err != nil {
		st.Abort()
		return n, err
	}
	if err := st.Commit(0o755); err != nil {
		return n, permanent{fmt.Errorf("claude-code: %w", err)}
	}
	return n, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// packument is the part of an npm package document ccboot reads.
type packument struct {
	DistTags map[string]string `json:"dist-tags"`
	Versions map[string]struct {
		Dist struct {
			Tarball   string `json:"tarball"`
			Integrity string `json:"integrity"`
		} `json:"dist"`
	} `json:"versions"`
}

func npmPackageName(plat string) string { return "@anthropic-ai/claude-code-" + plat }

func (s claudeSource) packument(ctx context.Context, plat string) (packument, error) {
	pkg := npmPackageName(plat)
	u := s.env.Config.ClaudeRegistry + "/" + strings.Replace(pkg, "/", "%2f", 1)
	data, err := s.getSmall(ctx, u, "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8", 16<<20)
	if errors.Is(err, errNotFound) {
		return packument{}, fmt.Errorf("claude-code: the registry has no package %s (%s: 404); check [claude-code] registry", pkg, u)
	}
	if err != nil {
		return packument{}, err
	}
	var doc packument
	if err := json.Unmarshal(data, &doc); err != nil {
		return packument{}, fmt.Errorf("claude-code: %s is not an npm package document: %v", u, err)
	}
	return doc, nil
}

// npmExecutable is the executable's path inside the platform package.
const npmExecutable = "package/claude"

func (s claudeSource) fetchNpm(ctx context.Context, version, plat, name string) (claudeRecord, error) {
	doc, err := s.packument(ctx, plat)
	if err != nil {
		return claudeRecord{}, err
	}
	pkg := npmPackageName(plat)
	ver, ok := doc.Versions[version]
	if !ok {
		return claudeRecord{}, fmt.Errorf("claude-code: version %s of %s is unknown to the registry %s; set [claude-code] version to a published version", version, pkg, s.env.Config.ClaudeRegistry)
	}
	tarURL, integrity := ver.Dist.Tarball, ver.Dist.Integrity
	algo, sum, ok := strings.Cut(integrity, "-")
	want, derr := base64.StdEncoding.DecodeString(sum)
	if !ok || algo != "sha512" || derr != nil || len(want) != sha512.Size {
		return claudeRecord{}, fmt.Errorf("claude-code: %s@%s has no sha512 dist.integrity (%q); ccboot installs only what it can verify", pkg, version, printableShort(integrity))
	}
	u, err := url.Parse(tarURL)
	if err != nil || !allowedURL(u, s.plainHTTP) {
		return claudeRecord{}, fmt.Errorf("claude-code: %s@%s: dist.tarball %q is not an https URL (plain http only to a loopback IP, from a plain-http loopback registry); check [claude-code] registry", pkg, version, printableShort(tarURL))
	}
	var exeSum string
	err = s.retry(ctx, tarURL, func(ctx context.Context) error {
		return s.get(ctx, tarURL, "", func(r io.Reader) error {
			h512 := sha512.New()
			body := &capReader{r: r, left: s.maxBytes, err: permanent{fmt.Errorf("claude-code: %s is larger than ccboot's cap of %s; nothing was installed, check [claude-code] registry", tarURL, humanBytes(s.maxBytes))}}
			tee := io.TeeReader(body, h512)
			sum, err := s.extract(tee, h512, want, name, tarURL, integrity)
			exeSum = sum
			return err
		})
	})
	if errors.Is(err, errNotFound) {
		return claudeRecord{}, fmt.Errorf("claude-code: %s: 404; the registry lists %s@%s but cannot serve it, check [claude-code] registry", tarURL, pkg, version)
	}
	if err != nil {
		return claudeRecord{}, err
	}
	return claudeRecord{URL: tarURL, SHA256: exeSum, Integrity: integrity}, nil
}

// extract streams the tarball (tee feeds h512) through gzip and tar, stages
// package/claude, reads the tarball to its end and commits the executable
// only when the whole tarball matches dist.integrity.
func (s claudeSource) extract(tee io.Reader, h512 hash.Hash, want []byte, name, tarURL, integrity string) (string, error) {
	zr, err := gzip.NewReader(tee)
	if err != nil {
		return "", s.tarErr(tarURL, err)
	}
	// Decompressed bytes are capped: a gzip bomb, or an entry drained
	// after package/claude, costs at most maxBytes of reading.
	gz := &capReader{r: zr, left: s.maxBytes, err: permanent{fmt.Errorf("claude-code: %s decompresses to more than ccboot's cap of %s; it is not a Claude Code platform package, check [claude-code] registry", tarURL, humanBytes(s.maxBytes))}}
	tr := tar.NewReader(gz)
	var exeSum string
	found := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", s.tarErr(tarURL, err)
		}
		// archive/tar expands a sparse entry's holes to its full declared
		// size without reading the network; npm never packs one.
		if sparseEntry(hdr) {
			return "", permanent{fmt.Errorf("claude-code: %s has a sparse entry %s; npm never packs sparse files, so it is not a Claude Code platform package; nothing was installed, check [claude-code] registry", tarURL, fsroot.Quote(hdr.Name))}
		}
		if hdr.Name != npmExecutable || hdr.Typeflag != tar.TypeReg || found {
			continue
		}
		found = true
		if err := s.roomFor(name, hdr.Size, tarURL+" ("+npmExecutable+")"); err != nil {
			return "", err
		}
		h := sha256.New()
		_, err = s.stream(name, io.TeeReader(tr, h), hdr.Size, tarURL, func(int64) error {
			exeSum = hex.EncodeToString(h.Sum(nil))
			// The rest of the tarball must arrive before the integrity
			// of the whole is known: read it now, before the commit.
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return s.tarErr(tarURL, err)
			}
			for {
				if _, err := tr.Next(); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					return s.tarErr(tarURL, err)
				}
			}
			if _, err := io.Copy(io.Discard, gz); err != nil {
				return s.tarErr(tarURL, err)
			}
			if _, err := io.Copy(io.Discard, tee); err != nil {
				return err
			}
			if got := h512.Sum(nil); !bytes.Equal(got, want) {
				return permanent{fmt.Errorf("claude-code: checksum mismatch for %s: sha512-%s, the registry's dist.integrity says %s; nothing was installed", tarURL, base64.StdEncoding.EncodeToString(got), integrity)}
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		return exeSum, nil
	}
	return "", permanent{fmt.Errorf("claude-code: %s has no %s; is it the platform package?", tarURL, npmExecutable)}
}

// tarErr: a truncated body shows as a gzip/tar error; it is retried like a
// network error. Anything else wrong with the archive is permanent.
func (s claudeSource) tarErr(tarURL string, err error) error {
	var p permanent
	if errors.As(err, &p) {
		return err // a cap's refusal, already worded
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || isNetErr(err) {
		return fmt.Errorf("claude-code: read %s: %w", tarURL, err)
	}
	return permanent{fmt.Errorf("claude-code: %s is not a valid gzip tarball: %w", tarURL, err)}
}

// sparseEntry: an old GNU sparse entry (type 'S') or a PAX one
// (GNU.sparse.* records; archive/tar reports those as regular files).
func sparseEntry(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// capReader passes at most left bytes of r, then fails with err.
type capReader struct {
	r    io.Reader
	left int64
	err  error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, c.err
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	if int64(n) > c.left {
		c.left = -1
		return 0, c.err
	}
	c.left -= int64(n)
	return n, err
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// claudePlatform is the platform name of the root's system: the
// architecture of its /bin/sh (the machine's when live and unreadable),
// with -musl when the root's dynamic loader is musl's.
func claudePlatform(env *bootstrap.Env) (string, error) {
	arch := elfArch(env)
	if arch == "" && env.Live() {
		arch = map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
	}
	if arch == "" {
		return "", fmt.Errorf("claude-code: cannot tell the architecture of %s (no readable x86-64 or aarch64 ELF %s); Claude Code ships for linux x64 and arm64", env.Root, env.Sys.Path("bin/sh"))
	}
	loader := map[string]string{"x64": "x86_64", "arm64": "aarch64"}[arch]
	for _, dir := range []string{"lib", "usr/lib"} {
		if ok, _ := env.Sys.Exists(dir + "/ld-musl-" + loader + ".so.1"); ok {
			return "linux-" + arch + "-musl", nil
		}
	}
	return "linux-" + arch, nil
}

// elfArch reads e_machine from the root's /bin/sh: "x64", "arm64" or "".
func elfArch(env *bootstrap.Env) string {
	f, err := env.Sys.OpenFollow("bin/sh")
	if err != nil {
		return ""
	}
	defer f.Close()
	var hdr [20]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil || string(hdr[:4]) != "\x7fELF" || hdr[5] != 1 {
		return "" // not ELF, or not little-endian
	}
	switch uint16(hdr[18]) | uint16(hdr[19])<<8 {
	case 0x3e:
		return "x64"
	case 0xb7:
		return "arm64"
	}
	return ""
}

// printableShort quotes at most 80 characters of server text in an error.
func printableShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
