package broker

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Role is a role the broker assumes for a tier.
type Role struct {
	ARN         string
	SessionName string
}

// Assumer assumes a role for a duration. The real one is STS signed with
// the instance role's credentials; tests may inject faults behind it.
type Assumer interface {
	AssumeRole(ctx context.Context, r Role, d time.Duration) (Credentials, error)
}

// STS minimum and the lifetime the broker asks for otherwise.
const (
	minSessionDuration = 15 * time.Minute
	maxSessionDuration = time.Hour
)

// elevatedDuration is what Elevated asks STS for: the rest of the window,
// at most an hour, but never below STS's 900 s minimum. So credentials
// outlive the window by at most 15 minutes.
func elevatedDuration(remaining time.Duration) time.Duration {
	d := min(remaining, maxSessionDuration).Truncate(time.Second)
	return max(d, minSessionDuration)
}

// NewSTS is the real Assumer: STS in region (at endpoint when set, e.g. a
// loopback stand-in) with the instance role's credentials from IMDS at
// imdsEndpoint ("" the SDK default). Nothing comes from the environment or
// shared config files. timeout bounds each HTTP exchange.
func NewSTS(region, endpoint, imdsEndpoint string, timeout time.Duration) Assumer {
	hc := &http.Client{Timeout: timeout}
	// ClientEnabled: the IMDS client otherwise reads AWS_EC2_METADATA_DISABLED
	// from the process environment.
	meta := imds.New(imds.Options{Endpoint: imdsEndpoint, EnableFallback: aws.FalseTernary, HTTPClient: hc, ClientEnableState: imds.ClientEnabled})
	o := sts.Options{
		Region:           region,
		Credentials:      aws.NewCredentialsCache(ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = meta })),
		HTTPClient:       hc,
		RetryMaxAttempts: 2,
	}
	if endpoint != "" {
		o.BaseEndpoint = aws.String(endpoint)
	}
	return stsAssumer{sts.New(o)}
}

type stsAssumer struct{ client *sts.Client }

func (a stsAssumer) AssumeRole(ctx context.Context, r Role, d time.Duration) (Credentials, error) {
	out, err := a.client.AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn:         aws.String(r.ARN),
		RoleSessionName: aws.String(r.SessionName),
		DurationSeconds: aws.Int32(int32(d / time.Second)),
	})
	if err != nil {
		return Credentials{}, err
	}
	c := out.Credentials
	if c == nil || c.AccessKeyId == nil || c.SecretAccessKey == nil || c.SessionToken == nil || c.Expiration == nil {
		return Credentials{}, fmt.Errorf("STS AssumeRole of %s answered without credentials", r.ARN)
	}
	return Credentials{Version: 1, AccessKeyID: *c.AccessKeyId, SecretAccessKey: *c.SecretAccessKey,
		SessionToken: *c.SessionToken, Expiration: c.Expiration.UTC().Format(time.RFC3339)}, nil
}
