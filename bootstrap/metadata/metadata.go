// Package metadata answers the questions ccboot asks the instance metadata
// service (IMDSv2 only): region, account, partition, instance ID and the
// instance profile. Each value is fetched at most once per run.
package metadata

import (
	"context"
	"errors"
	"fmt"
	"regexp"
)

// Source is what steps ask for. Implementations cache: a second call for the
// same value costs nothing.
type Source interface {
	Region(ctx context.Context) (string, error)
	AccountID(ctx context.Context) (string, error)
	Partition(ctx context.Context) (string, error)
	InstanceID(ctx context.Context) (string, error)
	// InstanceProfileARN fails with an error wrapping ErrNoInstanceProfile
	// when the instance has none.
	InstanceProfileARN(ctx context.Context) (string, error)
}

// ErrNoInstanceProfile means IMDS has no iam/info: no instance profile is attached.
var ErrNoInstanceProfile = errors.New("no instance profile attached to this instance")

// Partitions ccboot knows how to build ARNs for.
var knownPartitions = map[string]bool{
	"aws": true, "aws-cn": true, "aws-us-gov": true,
	"aws-iso": true, "aws-iso-b": true, "aws-iso-e": true, "aws-iso-f": true, "aws-eusc": true,
}

var (
	regionPattern     = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	accountPattern    = regexp.MustCompile(`^[0-9]{12}$`)
	instanceIDPattern = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
)

// ValidRegion reports whether r looks like an AWS region name.
func ValidRegion(r string) bool { return regionPattern.MatchString(r) }

// ValidPartition reports whether p is a partition ccboot knows.
func ValidPartition(p string) bool { return knownPartitions[p] }

func validate(what, value string, ok func(string) bool) error {
	if value == "" {
		return fmt.Errorf("IMDS returned an empty %s", what)
	}
	if !ok(value) {
		return fmt.Errorf("IMDS returned an invalid %s %q", what, value)
	}
	return nil
}

// Static is a Source with fixed values, for tests and for --root runs that
// configure everything.
type Static struct {
	RegionValue, AccountValue, PartitionValue, InstanceIDValue, ProfileARNValue string
	Err                                                                         error // returned by every call when set
}

func (s Static) get(v string) (string, error) {
	if s.Err != nil {
		return "", s.Err
	}
	return v, nil
}

func (s Static) Region(context.Context) (string, error)     { return s.get(s.RegionValue) }
func (s Static) AccountID(context.Context) (string, error)  { return s.get(s.AccountValue) }
func (s Static) Partition(context.Context) (string, error)  { return s.get(s.PartitionValue) }
func (s Static) InstanceID(context.Context) (string, error) { return s.get(s.InstanceIDValue) }
func (s Static) InstanceProfileARN(context.Context) (string, error) {
	if s.Err == nil && s.ProfileARNValue == "" {
		return "", ErrNoInstanceProfile
	}
	return s.get(s.ProfileARNValue)
}
