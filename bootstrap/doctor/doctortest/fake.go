// Package doctortest is a small fake of STS and the Bedrock control plane on
// loopback, for unit tests of ccboot doctor and for injecting the faults the
// real stand-in (packaging/awsstandin) cannot: each link of the chain can be
// broken on its own. It reads who signed a request from the SigV4
// Authorization header and does not verify signatures.
package doctortest

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// AEMMAccessKey is the access key AWS's metadata mock hands out as the
// instance role's credentials.
const AEMMAccessKey = "12345678901"

// AEMMSecretKey is its secret (a signature-checking stand-in needs it).
const AEMMSecretKey = "v/12345678901"

// Fake answers STS (AssumeRole, GetCallerIdentity) and Bedrock
// (ListInferenceProfiles, GetInferenceProfile, GetFoundationModel, and
// InvokeModel, which answers a permitted caller's request ValidationException
// since it never generates anything).
type Fake struct {
	URL     string
	Account string
	Region  string
	// InstanceRole is the role the AEMM key belongs to.
	InstanceRole string

	mu sync.Mutex
	// Trust: role name -> the role name allowed to assume it.
	Trust map[string]string
	// Bedrock: role names allowed to use the Bedrock control plane.
	Bedrock map[string]bool
	// Invoke: role names allowed bedrock:InvokeModel.
	Invoke map[string]bool
	// InvokeError, when set, is the ValidationException message InvokeModel
	// answers a permitted caller (model access not granted to the account).
	InvokeError string
	// Models: model IDs (profiles with a geographic prefix, or plain
	// foundation model IDs) the Region offers.
	Models map[string]bool
	keys   map[string]session // issued access key -> session
	next   int
	calls  []string
	asked  []string // RoleArn of every AssumeRole request

	// Availability is what GetFoundationModelAvailability answers for a
	// model of Models (without a prefix); the zero value is all available.
	Availability Availability
	// NoAvailabilityAPI: Bedrock here does not know the operation.
	NoAvailabilityAPI bool
}

type session struct{ role, name string }

// Availability is a model's standing for the account: each field empty
// for available (AVAILABLE, or AUTHORIZED), else the value to answer.
type Availability struct {
	Agreement, AgreementError, Authorization, Entitlement, Region string
}

// New starts a fake for the demo stack (claudecode-*-demo) with the chain
// intact: the instance role may assume ReadOnly, ReadOnly may assume
// Elevated, both tiers may use Bedrock, the instance role may not.
func New(t testing.TB, account, region string) *Fake {
	f := &Fake{
		Account: account, Region: region, InstanceRole: "claudecode-ec2-demo",
		Trust: map[string]string{
			"claudecode-readonly-demo": "claudecode-ec2-demo",
			"claudecode-elevated-demo": "claudecode-readonly-demo",
		},
		Bedrock: map[string]bool{"claudecode-readonly-demo": true, "claudecode-elevated-demo": true},
		Invoke:  map[string]bool{"claudecode-readonly-demo": true, "claudecode-elevated-demo": true},
		Models: map[string]bool{
			"eu.anthropic.claude-sonnet-4-6": true, "global.anthropic.claude-sonnet-4-6": true,
			"anthropic.claude-sonnet-4-6": true,
		},
		keys: map[string]session{AEMMAccessKey: {role: "claudecode-ec2-demo", name: "i-0123456789abcdef0"}},
	}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// Set changes the fake's rules under its lock.
func (f *Fake) Set(change func(f *Fake)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// Calls returns "service Action role" for every request, in order.
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// AssumeRoleARNs returns the RoleArn of every AssumeRole request, in order,
// whether it was granted or not.
func (f *Fake) AssumeRoleARNs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

// signer returns the access key and service of a SigV4-signed request.
func signer(r *http.Request) (key, service string) {
	auth := r.Header.Get("Authorization")
	_, cred, ok := strings.Cut(auth, "Credential=")
	if !ok {
		return "", ""
	}
	cred, _, _ = strings.Cut(cred, ",")
	parts := strings.Split(cred, "/")
	if len(parts) < 5 {
		return "", ""
	}
	return parts[0], parts[3]
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key, service := signer(r)
	caller, known := f.keys[key]
	switch service {
	case "sts":
		_ = r.ParseForm()
		action := r.PostForm.Get("Action")
		f.calls = append(f.calls, fmt.Sprintf("sts %s %s", action, caller.role))
		if !known {
			stsError(w, 403, "InvalidClientTokenId", "The security token included in the request is invalid.")
			return
		}
		f.sts(w, action, r.PostForm, caller)
	case "bedrock":
		f.calls = append(f.calls, fmt.Sprintf("bedrock %s %s", r.URL.Path, caller.role))
		if !known {
			jsonError(w, 403, "UnrecognizedClientException", "The security token included in the request is invalid.")
			return
		}
		f.bedrock(w, r, caller)
	default:
		http.Error(w, "unsigned or unknown service", http.StatusBadRequest)
	}
}

func (f *Fake) arn(s session) string {
	return fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", f.Account, s.role, s.name)
}

func (f *Fake) sts(w http.ResponseWriter, action string, form url.Values, caller session) {
	type creds struct {
		AccessKeyID     string `xml:"AccessKeyId"`
		SecretAccessKey string
		SessionToken    string
		Expiration      string
	}
	switch action {
	case "GetCallerIdentity":
		writeXML(w, struct {
			XMLName xml.Name `xml:"GetCallerIdentityResponse"`
			Result  struct {
				Arn, UserId, Account string
			} `xml:"GetCallerIdentityResult"`
		}{Result: struct{ Arn, UserId, Account string }{f.arn(caller), "AROAEXAMPLE:" + caller.name, f.Account}})
	case "AssumeRole":
		roleARN, name := form.Get("RoleArn"), form.Get("RoleSessionName")
		f.asked = append(f.asked, roleARN)
		role := roleARN[strings.LastIndexByte(roleARN, '/')+1:]
		if !strings.HasPrefix(roleARN, "arn:aws:iam::"+f.Account+":role/") || f.Trust[role] != caller.role {
			stsError(w, 403, "AccessDenied", fmt.Sprintf("User: %s is not authorized to perform: sts:AssumeRole on resource: %s", f.arn(caller), roleARN))
			return
		}
		f.next++
		key := fmt.Sprintf("ASIAFAKE%08d", f.next)
		s := session{role: role, name: name}
		f.keys[key] = s
		var out struct {
			XMLName xml.Name `xml:"AssumeRoleResponse"`
			Result  struct {
				Credentials     creds
				AssumedRoleUser struct{ Arn, AssumedRoleId string }
			} `xml:"AssumeRoleResult"`
		}
		out.Result.Credentials = creds{key, "secret", "token", "2099-01-01T00:00:00Z"}
		out.Result.AssumedRoleUser.Arn = f.arn(s)
		out.Result.AssumedRoleUser.AssumedRoleId = "AROAEXAMPLE:" + name
		writeXML(w, out)
	default:
		stsError(w, 400, "InvalidAction", "unknown action "+action)
	}
}

func (f *Fake) bedrock(w http.ResponseWriter, r *http.Request, caller session) {
	path, _ := url.PathUnescape(r.URL.EscapedPath())
	var action, id string
	switch {
	case path == "/inference-profiles":
		action = "ListInferenceProfiles"
	case strings.HasPrefix(path, "/inference-profiles/"):
		action, id = "GetInferenceProfile", strings.TrimPrefix(path, "/inference-profiles/")
	case strings.HasPrefix(path, "/foundation-models/"):
		action, id = "GetFoundationModel", strings.TrimPrefix(path, "/foundation-models/")
	case strings.HasPrefix(path, "/foundation-model-availability/"):
		action, id = "GetFoundationModelAvailability", strings.TrimPrefix(path, "/foundation-model-availability/")
	case strings.HasPrefix(path, "/model/") && strings.HasSuffix(path, "/invoke") && r.Method == http.MethodPost:
		id = strings.TrimSuffix(strings.TrimPrefix(path, "/model/"), "/invoke")
		if !f.Invoke[caller.role] {
			jsonError(w, 403, "AccessDeniedException", fmt.Sprintf("User: %s is not authorized to perform: bedrock:InvokeModel", f.arn(caller)))
			return
		}
		if !f.Models[id] {
			jsonError(w, 400, "ValidationException", "The provided model identifier is invalid.")
			return
		}
		if f.InvokeError != "" {
			jsonError(w, 400, "ValidationException", f.InvokeError)
			return
		}
		jsonError(w, 400, "ValidationException", "Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again.")
		return
	default:
		jsonError(w, 404, "UnknownOperationException", "unknown path "+path)
		return
	}
	if !f.Bedrock[caller.role] {
		jsonError(w, 403, "AccessDeniedException", fmt.Sprintf("User: %s is not authorized to perform: bedrock:%s", f.arn(caller), action))
		return
	}
	if id != "" && strings.HasPrefix(id, "arn:") {
		id = id[strings.LastIndexByte(id, '/')+1:]
	}
	switch action {
	case "ListInferenceProfiles":
		writeJSON(w, map[string]any{"inferenceProfileSummaries": []any{}})
	case "GetInferenceProfile":
		if !f.Models[id] {
			jsonError(w, 404, "ResourceNotFoundException", "The specified inference profile does not exist.")
			return
		}
		base := id[strings.IndexByte(id, '.')+1:]
		writeJSON(w, map[string]any{
			"inferenceProfileArn":  fmt.Sprintf("arn:aws:bedrock:%s:%s:inference-profile/%s", f.Region, f.Account, id),
			"inferenceProfileId":   id,
			"inferenceProfileName": id,
			"status":               "ACTIVE",
			"type":                 "SYSTEM_DEFINED",
			"models": []any{
				map[string]any{"modelArn": fmt.Sprintf("arn:aws:bedrock:%s::foundation-model/%s", f.Region, base)},
			},
		})
	case "GetFoundationModelAvailability":
		if f.NoAvailabilityAPI {
			jsonError(w, 404, "UnknownOperationException", "unknown path "+path)
			return
		}
		f.availability(w, id)
	case "GetFoundationModel":
		if !f.Models[id] {
			jsonError(w, 404, "ResourceNotFoundException", "The specified model does not exist.")
			return
		}
		writeJSON(w, map[string]any{"modelDetails": map[string]any{
			"modelArn": fmt.Sprintf("arn:aws:bedrock:%s::foundation-model/%s", f.Region, id), "modelId": id,
			"modelLifecycle": map[string]any{"status": "ACTIVE"},
		}})
	}
}

func writeXML(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "text/xml")
	_ = xml.NewEncoder(w).Encode(v)
}

func stsError(w http.ResponseWriter, code int, errCode, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>fake</RequestId></ErrorResponse>`, errCode, xmlEscape(msg))
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, code int, errType, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", errType)
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// availability answers GetFoundationModelAvailability for a foundation
// model ID (of Models) from f.Availability.
func (f *Fake) availability(w http.ResponseWriter, id string) {
	if !f.Models[id] {
		jsonError(w, 404, "ResourceNotFoundException", "The specified model does not exist.")
		return
	}
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	a := f.Availability
	agreement := map[string]string{"status": or(a.Agreement, "AVAILABLE")}
	if a.AgreementError != "" {
		agreement["errorMessage"] = a.AgreementError
	}
	writeJSON(w, map[string]any{
		"modelId": id, "agreementAvailability": agreement, "authorizationStatus": or(a.Authorization, "AUTHORIZED"),
		"entitlementAvailability": or(a.Entitlement, "AVAILABLE"), "regionAvailability": or(a.Region, "AVAILABLE"),
	})
}
