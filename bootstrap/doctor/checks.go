package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/bedrock"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	ccbedrock "github.com/ccboot/ccboot/bootstrap/bedrock"
)

// state carries what a passed check found to the checks that need it.
type state struct {
	env         *Env
	instanceCfg aws.Config // SDK settings only, with the instance role's credentials
	readOnlyCfg aws.Config // ccboot's ReadOnly tier: the instance role assumes ReadOnly
	elevatedCfg aws.Config // ccboot's Elevated tier: ReadOnly assumes Elevated
}

// loadConfig builds root's SDK settings from ccboot's values and root's own
// process environment only: an empty [default] of an in-memory file is the
// only shared config file (so neither the user's ~/.aws/config nor the
// operator's AWS_PROFILE / AWS_CONFIG_FILE is read), there is no
// credentials file, the credentials are set by the caller, IMDS is
// ccboot's endpoint and enabled whatever AWS_EC2_METADATA_DISABLED says,
// and the Region is the one ccboot writes as AWS_REGION. Endpoint overrides
// (AWS_ENDPOINT_URL_STS...) still come from root's environment, which is
// the operator's, not the user's.
func (s *state) loadConfig(ctx context.Context) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithSharedCredentialsFiles([]string{}),
		config.WithEC2IMDSClientEnableState(imds.ClientEnabled),
		config.WithCredentialsProvider(aws.AnonymousCredentials{}),
		// Bounded by the check's timeout; one retry for a dropped connection.
		config.WithRetryMaxAttempts(2),
	}
	if s.env.Region != "" {
		opts = append(opts, config.WithRegion(s.env.Region))
	}
	if s.env.IMDSEndpoint != "" {
		opts = append(opts, config.WithEC2IMDSEndpoint(s.env.IMDSEndpoint))
	}
	var cfg aws.Config
	err := withMemFile([]byte("[default]\n"), func(path string) error {
		var err error
		cfg, err = config.LoadDefaultConfig(ctx, append(opts,
			config.WithSharedConfigFiles([]string{path}),
			config.WithSharedConfigProfile("default"))...)
		return err
	})
	return cfg, err
}

func checkIMDS(ctx context.Context, s *state) outcome {
	const fix = "attach the stack's instance profile (claudecode-ec2-STACK) to the instance and keep IMDS enabled with a hop limit that reaches this host; if IMDS is elsewhere set [ccboot] imds_endpoint"
	cfg, err := s.loadConfig(ctx)
	if err != nil {
		return fail("SDK settings: "+describe(err), "fix the AWS_* variable named above")
	}
	client := imds.NewFromConfig(cfg)
	out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: "iam/security-credentials/"})
	if err != nil {
		return fail("no instance role in IMDS: "+describe(err), fix)
	}
	body, err := io.ReadAll(io.LimitReader(out.Content, 4096))
	out.Content.Close()
	if err != nil {
		return fail("IMDS: "+describe(err), fix)
	}
	role := strings.TrimSpace(strings.SplitN(string(body), "\n", 2)[0])
	cache := aws.NewCredentialsCache(ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }))
	if _, err := cache.Retrieve(ctx); err != nil {
		return fail(fmt.Sprintf("IMDS has no credentials for instance role %s: %s", role, describe(err)), fix)
	}
	cfg.Credentials = cache
	s.instanceCfg = cfg
	return pass("instance role %s: credentials from IMDS", role)
}

// checkAWSConfigFile compares the user's ~/.aws/config, read as text by
// the aws-config step's own vet, with what ccboot wrote. Nothing in the
// file is acted on: the tier checks build the chain from ccboot's values.
func checkAWSConfigFile(_ context.Context, s *state) outcome {
	const repair = "run `sudo ccboot repair --only aws-config`"
	// The vet compares with the Region and role ARNs ccboot computes.
	switch {
	case s.env.RegionErr != nil:
		return setupErr(s.env.RegionErr)
	case s.env.RolesErr != nil:
		return setupErr(s.env.RolesErr)
	case s.env.AWSConfigErr != nil:
		return fail(s.env.AWSConfigErr.Error(), repair)
	case s.env.AWSConfigVet != nil:
		// The vet's error is "cause; fix: what to do" in one line.
		detail, fix, ok := strings.Cut(s.env.AWSConfigVet.Error(), "; fix: ")
		if !ok {
			fix = "remove what the line above names from ccboot's profiles, or " + repair
		}
		return fail(detail, fix)
	}
	return pass("[profile %s] and [profile %s] hold exactly what ccboot wrote", s.env.ReadOnly.Profile, s.env.Elevated.Profile)
}

// checkTier assumes t's role with source's credentials, the session name
// ccboot writes for t's profile, and asks STS who it is:
// assumed-role/<role name>/<session name> of the expected role. On success
// keep holds the tier's SDK settings for the checks that need them.
func (s *state) checkTier(ctx context.Context, t *Tier, source aws.Config, keep *aws.Config) outcome {
	switch {
	case s.env.RegionErr != nil:
		return setupErr(s.env.RegionErr)
	case s.env.RolesErr != nil:
		return setupErr(s.env.RolesErr)
	}
	want, err := assumedRoleARN(t.RoleARN, t.Session)
	if err != nil {
		return setupErr(err)
	}
	if t == &s.env.Elevated && s.env.Enforced {
		// Enforced trust: Elevated trusts only the instance role (which
		// only root, the broker, reaches); ReadOnly is to be denied it.
		source = s.instanceCfg
	}
	cfg := source.Copy()
	cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(sts.NewFromConfig(source), t.RoleARN,
		func(o *stscreds.AssumeRoleOptions) { o.RoleSessionName = t.Session }))
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return fail(fmt.Sprintf("[profile %s]: %s", t.Profile, describe(err)), s.tierFix(t, err))
	}
	got := aws.ToString(out.Arn)
	if got != want {
		return fail(fmt.Sprintf("[profile %s]: STS says %s, want %s", t.Profile, got, want),
			"check the STS endpoint (AWS_ENDPOINT_URL_STS) and [aws] "+strings.ToLower(t.Label)+"_role_arn: AssumeRole of "+t.RoleARN+" must give this session")
	}
	*keep = cfg
	return pass("%s: ccboot's chain for [profile %s]", got, t.Profile)
}

// tierFix says which link to fix when resolving a tier failed.
func (s *state) tierFix(t *Tier, err error) string {
	op, code := apiError(err)
	switch {
	case op == "AssumeRole" && isDenied(code):
		from, stackRoles := "the instance role (claudecode-ec2-STACK)", "ReadOnlyRole and Ec2Role"
		switch {
		case t == &s.env.Elevated && s.env.Enforced:
			stackRoles = "ElevatedRole and Ec2Role, deployed with TierMode=enforced"
		case t == &s.env.Elevated:
			from, stackRoles = "the ReadOnly role "+s.env.ReadOnly.RoleARN, "ElevatedRole and ReadOnlyRole"
		}
		return fmt.Sprintf("the trust policy of %s must let %s assume it, and %s must be allowed sts:AssumeRole on it: check the stack's %s (packaging/cloudformation/ccboot.yaml)",
			t.RoleARN, from, from, stackRoles)
	case op == "AssumeRole" && code == "NoSuchEntity":
		return fmt.Sprintf("role %s does not exist: create the stack's roles, or set [aws] %s_role_arn in the ccboot config", t.RoleARN, strings.ToLower(t.Label))
	case unreachable(err):
		return "cannot reach STS: give the instance a route to it (NAT gateway, or an sts VPC interface endpoint); AWS_ENDPOINT_URL_STS overrides the endpoint"
	}
	return fmt.Sprintf("check the error above: STS must let ccboot's chain assume %s with session name %s", t.RoleARN, t.Session)
}

// assumedRoleARN is the caller ARN STS reports for a session of roleARN:
// arn:P:sts::ACCOUNT:assumed-role/NAME/SESSION (a role's path is dropped).
func assumedRoleARN(roleARN, session string) (string, error) {
	parts := strings.SplitN(roleARN, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iam" || !strings.HasPrefix(parts[5], "role/") {
		return "", fmt.Errorf("role ARN %q is not arn:PARTITION:iam::ACCOUNT:role/NAME; fix [aws] readonly_role_arn / elevated_role_arn", roleARN)
	}
	name := parts[5][strings.LastIndexByte(parts[5], '/')+1:]
	return fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", parts[1], parts[4], name, session), nil
}

// modelCall is how the model is described: inference profiles (geographic
// or global IDs, inference-profile and application-inference-profile ARNs)
// with GetInferenceProfile, everything else with GetFoundationModel.
func modelCall(model string) string {
	if _, _, ok := ccbedrock.SplitPrefix(model); ok {
		return "GetInferenceProfile"
	}
	if strings.HasPrefix(model, "arn:") && (strings.Contains(model, ":inference-profile/") || strings.Contains(model, ":application-inference-profile/")) {
		return "GetInferenceProfile"
	}
	return "GetFoundationModel"
}

func checkModel(ctx context.Context, s *state) outcome {
	if s.env.ModelErr != nil {
		return fail(s.env.ModelErr.Error(), "set [bedrock] model in the ccboot config to one this Region can use (or remove it for the default), then run `sudo ccboot repair`")
	}
	model, region := s.env.Model, s.env.Region
	client := bedrock.NewFromConfig(s.readOnlyCfg)
	call := modelCall(model)
	var detail string
	var err error
	if call == "GetInferenceProfile" {
		var out *bedrock.GetInferenceProfileOutput
		out, err = client.GetInferenceProfile(ctx, &bedrock.GetInferenceProfileInput{InferenceProfileIdentifier: aws.String(model)})
		if err == nil {
			detail = fmt.Sprintf("%s in %s: inference profile %s, %s, routes to %d model(s)", model, region, aws.ToString(out.InferenceProfileArn), out.Status, len(out.Models))
		}
	} else {
		var out *bedrock.GetFoundationModelOutput
		out, err = client.GetFoundationModel(ctx, &bedrock.GetFoundationModelInput{ModelIdentifier: aws.String(model)})
		if err == nil && out.ModelDetails != nil {
			status := ""
			if out.ModelDetails.ModelLifecycle != nil {
				status = ", " + string(out.ModelDetails.ModelLifecycle.Status)
			}
			detail = fmt.Sprintf("%s in %s: foundation model %s%s", model, region, aws.ToString(out.ModelDetails.ModelArn), status)
		} else if err == nil {
			err = errors.New("GetFoundationModel returned no model details")
		}
	}
	if err != nil {
		return fail(fmt.Sprintf("%s in %s with the ReadOnly role: %s", model, region, describe(err)), modelFix(model, region, call, err))
	}
	return pass("%s", detail)
}

func modelFix(model, region, call string, err error) string {
	_, code := apiError(err)
	switch {
	case isDenied(code):
		return fmt.Sprintf("the ReadOnly role may not call bedrock:%s: add it to the role's policy (the stack's BedrockPolicy)", call)
	case code == "ResourceNotFoundException" || code == "ValidationException":
		prefixes := ccbedrock.Prefixes(region)
		hint := ""
		if len(prefixes) > 0 {
			hint = " (inference profile prefixes that work in " + region + ": " + strings.Join(prefixes, ", ") + ")"
		}
		return fmt.Sprintf("Bedrock in %s does not offer %s: set [bedrock] model to one it offers%s (aws bedrock list-inference-profiles --region %s), then run `sudo ccboot repair`", region, model, hint, region)
	case unreachable(err):
		return "cannot reach Bedrock: give the instance a route to it (NAT gateway, or a bedrock VPC interface endpoint); AWS_ENDPOINT_URL_BEDROCK overrides the endpoint"
	}
	return "check the error above"
}

// invokeProbe is an InvokeModel body without the required keys: Bedrock
// answers "ValidationException: Malformed input request" when the caller
// may invoke the model and AccessDeniedException when it may not, and runs
// no inference either way (nothing is generated or billed).
var invokeProbe = []byte("{}")

// checkInvoke asks whether t's role may invoke the model, which describing
// it does not show: the AWS managed ReadOnlyAccess grants the describe
// calls to a role that lacks bedrock:InvokeModel.
func (s *state) checkInvoke(ctx context.Context, t *Tier, cfg aws.Config) outcome {
	model := s.env.Model
	_, err := bedrockruntime.NewFromConfig(cfg).InvokeModel(ctx, &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(model), Body: invokeProbe, ContentType: aws.String("application/json"), Accept: aws.String("application/json")})
	_, code := apiError(err)
	var ae smithy.APIError
	malformed := errors.As(err, &ae) && code == "ValidationException" && strings.HasPrefix(ae.ErrorMessage(), "Malformed input request")
	switch {
	// Only the schema complaint means the request got past IAM and model
	// access: Bedrock also answers ValidationException for "Your account is
	// not authorized to invoke this API operation", an invalid model
	// identifier or a model without on-demand throughput.
	case err == nil || malformed:
		return pass("the %s role may invoke %s (an empty request, rejected as malformed: no inference)", t.Label, model)
	case isDenied(code):
		return fail(fmt.Sprintf("the %s role may not invoke %s: %s", t.Label, model, describe(err)),
			fmt.Sprintf("allow bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream on the inference profile and the foundation models it routes to, for %s (the stack's BedrockPolicy)", t.RoleARN))
	case unreachable(err):
		return fail("cannot reach Bedrock runtime: "+describe(err), "give the instance a route to it (NAT gateway, or a bedrock-runtime VPC interface endpoint); AWS_ENDPOINT_URL_BEDROCK_RUNTIME overrides the endpoint")
	}
	fix := "check the error above"
	if code == "ValidationException" {
		fix = fmt.Sprintf("make %s usable by this account in %s: model access in the Bedrock console (Anthropic models need the use-case form once), or set [bedrock] model to one it can use", model, s.env.Region)
	}
	return fail(fmt.Sprintf("InvokeModel %s as %s: %s", model, t.Label, describe(err)), fix)
}

// checkInstanceNoBedrock is the seed's fail-safe: the instance role alone,
// which every process on the host can get from IMDS, must not use Bedrock,
// so Claude Code without a profile fails. A denial passes.
func checkInstanceNoBedrock(ctx context.Context, s *state) outcome {
	if s.env.RegionErr != nil {
		return setupErr(s.env.RegionErr)
	}
	_, err := bedrock.NewFromConfig(s.instanceCfg).ListInferenceProfiles(ctx, &bedrock.ListInferenceProfilesInput{MaxResults: aws.Int32(1)})
	if err == nil {
		return fail("the instance role can use Bedrock (bedrock:ListInferenceProfiles succeeded with the instance credentials)",
			"remove the bedrock:* permissions from the instance role (the stack's Ec2Role must not use BedrockPolicy): only the ReadOnly and Elevated tiers may use Bedrock")
	}
	if _, code := apiError(err); isDenied(code) {
		return pass("the instance role alone is denied Bedrock (ListInferenceProfiles: %s)", code)
	}
	fix := "check the error above: the check needs an answer from Bedrock"
	if unreachable(err) {
		fix = "cannot reach Bedrock: give the instance a route to it (NAT gateway, or a bedrock VPC interface endpoint); AWS_ENDPOINT_URL_BEDROCK overrides the endpoint"
	}
	return fail("cannot tell whether the instance role is denied Bedrock: "+describe(err), fix)
}

func isDenied(code string) bool {
	return code == "AccessDenied" || code == "AccessDeniedException"
}

// apiError returns the innermost operation and the API error code of err
// (credential errors nest AssumeRole's error inside the outer call's).
func apiError(err error) (op, code string) {
	if oe := innermostOp(err); oe != nil {
		op = oe.Operation()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	return op, code
}

// unreachable reports a failure to connect at all (no route, refused, DNS).
func unreachable(err error) bool {
	var ne *net.OpError
	var de *net.DNSError
	return errors.As(err, &ne) || errors.As(err, &de)
}

// describe is err in one line: "Service Operation: Code: message" for API
// errors, the innermost operation's error otherwise; no request IDs.
func describe(err error) string {
	innermost := innermostOp(err)
	var ae smithy.APIError
	if errors.As(err, &ae) {
		msg := ae.ErrorCode()
		if m := ae.ErrorMessage(); m != "" {
			msg += ": " + m
		}
		if innermost != nil {
			return innermost.Service() + " " + innermost.Operation() + ": " + msg
		}
		return msg
	}
	if errors.Is(err, context.DeadlineExceeded) {
		if innermost != nil {
			return innermost.Service() + " " + innermost.Operation() + ": no answer"
		}
		return "no answer"
	}
	if innermost != nil {
		return innermost.Service() + " " + innermost.Operation() + ": " + oneLine(innermost.Err)
	}
	return oneLine(err)
}

// innermostOp is the last operation error in err's chain: the call that
// actually failed (AssumeRole inside GetCallerIdentity's credential lookup).
func innermostOp(err error) *smithy.OperationError {
	var innermost *smithy.OperationError
	for e := err; e != nil; e = errors.Unwrap(e) {
		if oe, ok := e.(*smithy.OperationError); ok {
			innermost = oe
		}
	}
	return innermost
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
