package awsstandin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sigv4 is a parsed Authorization header:
// AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex
type sigv4 struct {
	AccessKey, Date, Region, Service string
	SignedHeaders, Signature         string
}

const amzDateFormat = "20060102T150405Z"

func parseAuthorization(h string) (*sigv4, error) {
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != "AWS4-HMAC-SHA256" {
		return nil, fmt.Errorf("authorization header: algorithm %q is not AWS4-HMAC-SHA256", alg)
	}
	var a sigv4
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "aws4_request" {
				return nil, fmt.Errorf("authorization header: Credential %q is not AKID/DATE/REGION/SERVICE/aws4_request", v)
			}
			a.AccessKey, a.Date, a.Region, a.Service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			a.SignedHeaders = v
		case "Signature":
			a.Signature = v
		}
	}
	if a.AccessKey == "" || a.SignedHeaders == "" || a.Signature == "" {
		return nil, errors.New("authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters")
	}
	return &a, nil
}

const msgSignature = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."

func signatureError(detail string) *apiError {
	msg := msgSignature
	if detail != "" {
		msg += " (standin: " + detail + ")"
	}
	return &apiError{http.StatusForbidden, "SignatureDoesNotMatch", msg}
}

// verify signs a copy of r carrying only the headers the client signed
// with the SDK's own signer and the secret we know for the key, and
// compares the signatures. The errors are *apiError.
func verify(r *http.Request, body []byte, a *sigv4, secret string) error {
	t, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return signatureError(fmt.Sprintf("X-Amz-Date %q is not %s", r.Header.Get("X-Amz-Date"), amzDateFormat))
	}
	if t.Format("20060102") != a.Date {
		return signatureError("the credential scope's date is not the X-Amz-Date's")
	}
	sum := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(sum[:])
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	switch payloadHash {
	case "":
		payloadHash = bodyHash
	case "UNSIGNED-PAYLOAD", bodyHash:
	default:
		return &apiError{http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed."}
	}
	u := &url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	c := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: http.Header{}}
	creds := aws.Credentials{AccessKeyID: a.AccessKey, SecretAccessKey: secret}
	for _, h := range strings.Split(a.SignedHeaders, ";") {
		switch h {
		case "host":
		case "content-length":
			n, err := strconv.ParseInt(r.Header.Get("Content-Length"), 10, 64)
			if err != nil {
				n = int64(len(body))
			}
			c.ContentLength = n
		case "x-amz-security-token":
			creds.SessionToken = r.Header.Get("X-Amz-Security-Token")
		default:
			c.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, c, payloadHash, a.Service, a.Region, t); err != nil {
		return err
	}
	want, err := parseAuthorization(c.Header.Get("Authorization"))
	if err != nil {
		return err
	}
	if want.SignedHeaders != a.SignedHeaders {
		// A header the SDK's signer does not sign (User-Agent...).
		return signatureError(fmt.Sprintf("signed headers %s, the SDK's signer signs %s", a.SignedHeaders, want.SignedHeaders))
	}
	if subtle.ConstantTimeCompare([]byte(want.Signature), []byte(a.Signature)) != 1 {
		return signatureError("")
	}
	return nil
}
