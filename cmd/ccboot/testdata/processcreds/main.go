// Command processcreds is the AWS SDK for Go resolving a profile of
// ~/.aws/config the way any Go program of the user would, for the
// enforced-mode blackbox test: the SDK's own shared-config loader picks the
// profile's credential_process and runs it through credentials/processcreds.
// It prints the credentials' key and expiry, then the caller's ARN from STS
// (AWS_ENDPOINT_URL_STS), as one JSON line; on an error it prints the error
// on stderr and exits 1.
//
//	processcreds PROFILE
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: processcreds PROFILE")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithSharedConfigProfile(os.Args[1]))
	if err != nil {
		fail(err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		fail(err)
	}
	id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		fail(err)
	}
	out, _ := json.Marshal(map[string]any{
		"AccessKeyID": creds.AccessKeyID, "Source": creds.Source,
		"CanExpire": creds.CanExpire, "Expires": creds.Expires, "Arn": *id.Arn,
	})
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
