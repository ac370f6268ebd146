package bootstrap

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// waitConditionSignal is the body CloudFormation expects on a
// WaitConditionHandle's pre-signed URL.
type waitConditionSignal struct {
	Status   string `json:"Status"` // SUCCESS or FAILURE
	Reason   string `json:"Reason"`
	UniqueID string `json:"UniqueId"`
	Data     string `json:"Data"`
}

// maxReasonLen caps the reason sent to CloudFormation: stack events are
// readable by anyone who may describe the stack, so the reason says which
// step failed and why in brief; the full error stays on the instance.
const maxReasonLen = 200

// CheckWaitConditionURL accepts the WaitConditionHandle's pre-signed URL:
// https, or plain http only to a literal loopback IP (127.0.0.0/8, ::1) for
// tests. The host is parsed, never matched as a string, so
// http://127.attacker.example/ and http://localhost:x@attacker.example/ are
// refused before any name is looked up.
func CheckWaitConditionURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return errors.New("must be an https:// URL (the WaitConditionHandle's pre-signed URL)")
	}
	if u.User != nil {
		return errors.New("must not hold user@ before the host (a pre-signed URL has none); use the WaitConditionHandle's URL as CloudFormation gives it")
	}
	switch u.Scheme {
	case "https":
		if u.Hostname() == "" {
			return errors.New("must be an https:// URL with a host name")
		}
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("must be an https:// URL; plain http:// only to a loopback IP address (127.0.0.1, [::1]) for tests, never to a host name")
	}
	return errors.New("must be an https:// URL (the WaitConditionHandle's pre-signed URL)")
}

// SignalWaitCondition reports the run's outcome to [ccboot]
// wait_condition_url, if set, so a stack completes only when the instance is
// really ready. The URL is pre-signed: no credentials are involved. It is
// sent once per instance: later boots' runs would only hit an expired URL.
func (s *Session) SignalWaitCondition(ctx context.Context, r *Report) error {
	url := s.Env.Config.WaitConditionURL
	if url == "" || r.WaitConditionSignalled != "" {
		return nil
	}
	if err := CheckWaitConditionURL(url); err != nil {
		return fmt.Errorf("signal wait condition: [ccboot] wait_condition_url %w", err)
	}
	sig := waitConditionSignal{Status: "SUCCESS", Reason: Summary(r), UniqueID: r.InstanceID, Data: Summary(r)}
	if sig.UniqueID == "" {
		sig.UniqueID = "ccboot"
	}
	if r.Failed() {
		sig.Status = "FAILURE"
		for _, st := range r.Steps {
			if st.Error != "" {
				sig.Reason = st.Name + ": " + st.Error
				break
			}
		}
	}
	sig.Reason = signalText(sig.Reason)
	body, _ := json.Marshal(sig)
	client := waitConditionClient()
	var lastErr error
	for attempt := 1; attempt <= 5; attempt++ {
		lastErr = putSignal(ctx, client, url, body)
		if lastErr == nil {
			s.Env.Log.Info("signalled wait condition", zap.String("status", sig.Status))
			r.WaitConditionSignalled = sig.Status
			return SaveState(s.Env.Sys, *r)
		}
		s.Env.Log.Warn("wait condition signal failed", zap.Int("attempt", attempt), zap.Error(lastErr))
		var perm permanentError
		if errors.As(lastErr, &perm) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	return fmt.Errorf("signal wait condition: %w (the stack will time out; check [ccboot] wait_condition_url)", lastErr)
}

// signalText is what may leave the instance in a stack event: one line, no
// control characters, at most maxReasonLen bytes.
func signalText(s string) string {
	s = strings.ReplaceAll(Printable(s), "\n", " ")
	if len(s) <= maxReasonLen {
		return s
	}
	cut := maxReasonLen - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// waitConditionClient is the PUT's own client: it never follows a redirect
// (a 3xx could send the pre-signed URL and the body elsewhere, or to plain
// http), and every phase has a timeout.
func waitConditionClient() *http.Client {
	return &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConns:          1,
			IdleConnTimeout:       5 * time.Second,
		},
	}
}

// permanentError is a refusal that retrying cannot change.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

func putSignal(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return permanentError{err}
	}
	// The pre-signed URL is signed for an empty Content-Type.
	req.Header.Set("Content-Type", "")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	switch code := resp.StatusCode; {
	case code/100 == 2:
		return nil
	case code/100 == 3:
		return permanentError{fmt.Errorf("PUT answered %s, a redirect; ccboot does not follow redirects with the pre-signed URL (use the WaitConditionHandle's own URL)", resp.Status)}
	case code/100 == 4 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		return permanentError{fmt.Errorf("PUT returned %s", resp.Status)}
	default:
		return fmt.Errorf("PUT returned %s", resp.Status)
	}
}
