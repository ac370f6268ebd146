package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"
)

// DefaultDeadline bounds how long ccboot waits for IMDS at early boot.
const DefaultDeadline = 2 * time.Minute

// IMDS is a Source backed by the instance metadata service, IMDSv2 only.
type IMDS struct {
	client   *imds.Client
	endpoint string
	deadline time.Duration
	log      *zap.Logger

	startOnce sync.Once
	giveUpAt  time.Time

	identity  cached[imds.InstanceIdentityDocument]
	partition cached[string]
	profile   cached[string]
}

// cached holds one value fetched at most once; errors are cached too, so a
// run that has waited out the deadline does not wait again for the next value.
type cached[T any] struct {
	once  sync.Once
	value T
	err   error
}

func (c *cached[T]) get(fetch func() (T, error)) (T, error) {
	c.once.Do(func() { c.value, c.err = fetch() })
	return c.value, c.err
}

// NewIMDS builds a Source. endpoint "" means the SDK's default (or its
// AWS_EC2_METADATA_SERVICE_ENDPOINT environment variable); deadline is the
// overall time to keep retrying while IMDS is unreachable or failing.
func NewIMDS(endpoint string, deadline time.Duration, log *zap.Logger) *IMDS {
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	if log == nil {
		log = zap.NewNop()
	}
	client := imds.New(imds.Options{
		Endpoint: endpoint,
		// Never fall back to IMDSv1: a token is required or nothing is read.
		EnableFallback: aws.FalseTernary,
		// Our own loop below retries until the overall deadline.
		Retryer: aws.NopRetryer{},
	})
	return &IMDS{client: client, endpoint: endpoint, deadline: deadline, log: log}
}

func (m *IMDS) Region(ctx context.Context) (string, error) {
	doc, err := m.identityDocument(ctx)
	if err != nil {
		return "", err
	}
	return doc.Region, validate("region", doc.Region, ValidRegion)
}

func (m *IMDS) AccountID(ctx context.Context) (string, error) {
	doc, err := m.identityDocument(ctx)
	if err != nil {
		return "", err
	}
	return doc.AccountID, validate("account ID", doc.AccountID, accountPattern.MatchString)
}

func (m *IMDS) InstanceID(ctx context.Context) (string, error) {
	doc, err := m.identityDocument(ctx)
	if err != nil {
		return "", err
	}
	return doc.InstanceID, validate("instance ID", doc.InstanceID, instanceIDPattern.MatchString)
}

func (m *IMDS) Partition(ctx context.Context) (string, error) {
	return m.partition.get(func() (string, error) {
		var p string
		err := m.retry(ctx, "services/partition", func(ctx context.Context) error {
			out, err := m.client.GetMetadata(ctx, &imds.GetMetadataInput{Path: "services/partition"})
			if err != nil {
				return err
			}
			defer out.Content.Close()
			b, err := io.ReadAll(io.LimitReader(out.Content, 256))
			p = strings.TrimSpace(string(b))
			return err
		})
		if err != nil {
			return "", err
		}
		if err := validate("partition", p, ValidPartition); err != nil {
			return "", fmt.Errorf("%w (known: aws, aws-cn, aws-us-gov, aws-iso*, aws-eusc); set role ARNs in the config to proceed", err)
		}
		return p, nil
	})
}

func (m *IMDS) InstanceProfileARN(ctx context.Context) (string, error) {
	return m.profile.get(func() (string, error) {
		var arn string
		err := m.retry(ctx, "iam/info", func(ctx context.Context) error {
			out, err := m.client.GetIAMInfo(ctx, &imds.GetIAMInfoInput{})
			if err != nil {
				if statusCode(err) == http.StatusNotFound {
					return permanent{ErrNoInstanceProfile}
				}
				return err
			}
			arn = out.InstanceProfileArn
			return nil
		})
		if err != nil {
			return "", err
		}
		if arn == "" {
			return "", fmt.Errorf("IMDS iam/info has an empty InstanceProfileArn")
		}
		return arn, nil
	})
}

func (m *IMDS) identityDocument(ctx context.Context) (imds.InstanceIdentityDocument, error) {
	return m.identity.get(func() (imds.InstanceIdentityDocument, error) {
		var doc imds.InstanceIdentityDocument
		err := m.retry(ctx, "instance identity document", func(ctx context.Context) error {
			out, err := m.client.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
			if err != nil {
				var syntax *json.SyntaxError
				var typeErr *json.UnmarshalTypeError
				var deser *smithy.DeserializationError
				if errors.As(err, &syntax) || errors.As(err, &typeErr) || errors.As(err, &deser) {
					return permanent{fmt.Errorf("malformed JSON in the identity document: %w", err)}
				}
				return err
			}
			doc = out.InstanceIdentityDocument
			return nil
		})
		return doc, err
	})
}

// permanent marks an error that retrying cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// retry calls fetch until it succeeds, fails permanently, or the overall
// deadline (counted from the first IMDS request of the run) passes.
func (m *IMDS) retry(ctx context.Context, what string, fetch func(context.Context) error) error {
	m.startOnce.Do(func() { m.giveUpAt = time.Now().Add(m.deadline) })
	ctx, cancel := context.WithDeadline(ctx, m.giveUpAt)
	defer cancel()
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fetch(ctx)
		if err == nil {
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) || isPermanent(err) {
			return m.describe(what, err)
		}
		m.log.Debug("IMDS not ready, retrying", zap.String("what", what), zap.Int("attempt", attempt), zap.Error(err))
		select {
		case <-ctx.Done():
			return m.describe(what, fmt.Errorf("gave up after %s and %d attempts: %w", m.deadline, attempt, err))
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// isPermanent: answers that will not change by asking again. A refused or
// missing token endpoint means IMDSv1 only or IMDS disabled: ccboot does not
// fall back, so waiting would only delay the error.
func isPermanent(err error) bool {
	if unreachable(err) {
		return false
	}
	switch statusCode(err) {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
		return true
	}
	return false
}

func (m *IMDS) describe(what string, err error) error {
	where := m.endpoint
	if where == "" {
		where = "the default endpoint"
	}
	msg := fmt.Sprintf("IMDS %s at %s: %v", what, where, err)
	if !unreachable(err) && strings.Contains(err.Error(), "API token") {
		msg += " (ccboot needs IMDSv2: enable the token endpoint, e.g. HttpTokens=required, HttpEndpoint=enabled)"
	} else if !errors.As(err, new(permanent)) {
		// Only waiting longer or reaching IMDS can fix a transient failure;
		// a permanent answer (no profile, malformed JSON) says so itself.
		msg += " (check that the instance metadata service is enabled and reachable, or raise imds_timeout in the config)"
	}
	return &Error{msg: msg, err: err}
}

// Error is an IMDS failure with a message that names the cause and the fix.
type Error struct {
	msg string
	err error
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.err }

func statusCode(err error) int {
	var se interface{ HTTPStatusCode() int }
	if errors.As(err, &se) {
		return se.HTTPStatusCode()
	}
	// The SDK wraps token failures in a type without Unwrap, so the status
	// is only in the text ("... StatusCode: 403, ...").
	if m := statusInText.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

var statusInText = regexp.MustCompile(`StatusCode: ([0-9]{3})`)

// unreachable: nothing answered (connection refused, timeout): IMDS may
// still be coming up, so it is worth waiting for.
func unreachable(err error) bool {
	var re *smithyhttp.RequestSendError
	if errors.As(err, &re) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "request send failed") || strings.Contains(s, "connection refused") || strings.Contains(s, "deadline exceeded")
}
