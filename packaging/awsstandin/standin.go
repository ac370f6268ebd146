// Package awsstandin is a loopback stand-in for AWS STS and Amazon Bedrock
// (control plane and runtime) for tests: it verifies each request's SigV4
// signature, and decides it with the real IAM engine over the CloudFormation
// template's own policies (packaging/iam/harness.mjs, iam-simulate), so a
// permission missing from the template fails the tests that use it. A test
// tool: never linked into ccboot.
package awsstandin

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ccboot/ccboot/packaging/cfn"
)

// Config says which stack the stand-in serves.
type Config struct {
	Template                              string // path to packaging/cloudformation/ccboot.yaml (or a mutated copy)
	PoliciesDir                           string // AWS managed policy documents (../shared/aws/managed-policies)
	HarnessDir                            string // packaging/iam: harness.mjs and its node_modules
	StackName, Region, Account, Partition string
	Params                                map[string]string // template parameters (the template's defaults otherwise)
	// InstanceKeys: access key id -> secret, the credentials the IMDS mock
	// hands out; they belong to the template's instance role. Their session
	// token is not checked (the mock chooses it).
	InstanceKeys map[string]string
	// InstanceID is the instance role session's name ("" for AEMM's
	// default, i-1234567890abcdef0).
	InstanceID string
	// OnRequest, if set, is called with each request as it completes.
	OnRequest func(Request)
	// ModelAccess: the account's use-case form, Marketplace agreement and
	// Region availability (zero: all in place).
	ModelAccess ModelAccess
	// AgentScript: shell commands Bedrock asks Claude Code's Bash tool to
	// run, one tool_use per turn, before it ends the conversation with
	// text (agent.go). Empty: every turn is answered with text.
	AgentScript []string
}

// Request is one request the stand-in answered.
type Request struct {
	Service   string `json:"service"`   // "sts" | "bedrock" | "bedrock-runtime"
	Action    string `json:"action"`    // IAM action, e.g. "sts:AssumeRole"
	Resource  string `json:"resource"`  // ARN evaluated (the denied one when denied)
	AccessKey string `json:"accessKey"` // access key id that signed it
	Role      string `json:"role"`      // ARN of the role that key was issued for, "" if unknown
	Session   string `json:"session"`   // role session name the key was issued for
	Decision  string `json:"decision"`  // Allowed | ExplicitlyDenied | ImplicitlyDenied | "" (not evaluated)
	Status    int    `json:"status"`
	ModelID   string `json:"modelId,omitempty"`
	Error     string `json:"error,omitempty"` // the error code answered, if any
	// Marketplace: the decision on the caller's Marketplace subscription
	// through Bedrock, when an invoke had to subscribe the account.
	Marketplace string `json:"marketplace,omitempty"`
	// ToolUse: the script's command this answer asked Bash to run;
	// ToolResults: what Claude Code sent back for the commands before.
	ToolUse     string       `json:"toolUse,omitempty"`
	ToolResults []ToolResult `json:"toolResults,omitempty"`
	// Messages, WorkDir: a conversation turn's messages as text (not the
	// availability probes'), and the working directory Claude Code told
	// the model, so a test can tell that a resumed session carries the
	// conversation before it, in the same directory.
	Messages []Message `json:"messages,omitempty"`
	WorkDir  string    `json:"workDir,omitempty"`
}

// identity is who a key was issued to.
type identity struct {
	secret, token string
	role          *cfn.Role
	session       string
	expires       time.Time // zero: never (instance keys)
}

func (id *identity) principal(partition, account string) string {
	return fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", partition, account, id.role.Name, id.session)
}

// Server is the stand-in: an http.Handler for every endpoint.
type Server struct {
	cfg      Config
	roles    map[string]*cfn.Role // by ARN
	instance *cfn.Role
	engine   *engine

	mu   sync.Mutex
	keys map[string]*identity
	reqs []Request
	// subscribed: the account holds the Marketplace agreement;
	// subscribeError: why the last automatic subscription failed.
	subscribed     bool
	subscribeError string
}

// New resolves the template for the stack, starts the IAM engine and
// checks it decides with every role's policies.
func New(cfg Config) (*Server, error) {
	if cfg.StackName == "" || cfg.Region == "" || cfg.Account == "" || cfg.Partition == "" {
		return nil, fmt.Errorf("awsstandin: stack name, Region, account and partition must all be set (got %q %q %q %q)",
			cfg.StackName, cfg.Region, cfg.Account, cfg.Partition)
	}
	if p := partitionOf(cfg.Region); p != cfg.Partition {
		return nil, fmt.Errorf("awsstandin: Region %s is in partition %s, not %s", cfg.Region, p, cfg.Partition)
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = "i-1234567890abcdef0"
	}
	text, err := os.ReadFile(cfg.Template)
	if err != nil {
		return nil, fmt.Errorf("awsstandin: %w", err)
	}
	tpl, err := cfn.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("awsstandin: template %s: %w", cfg.Template, err)
	}
	params := map[string]string{}
	// Parameters without a default (VPC, subnet...) do not shape the IAM
	// policies: a placeholder lets the template resolve.
	for name, p := range cfn.Section(tpl, "Parameters") {
		if cfn.Dig(p, "Default") == nil {
			params[name] = "standin-" + strings.ToLower(name)
		}
	}
	for k, v := range cfg.Params {
		params[k] = v
	}
	res, err := cfn.Resolve(tpl, cfn.Stack{Partition: cfg.Partition, Region: cfg.Region, Account: cfg.Account,
		Name: cfg.StackName, InstanceID: cfg.InstanceID, Params: params})
	if err != nil {
		return nil, fmt.Errorf("awsstandin: template %s: %w", cfg.Template, err)
	}
	byLogical, err := cfn.Roles(res, cfg.PoliciesDir)
	if err != nil {
		return nil, fmt.Errorf("awsstandin: %w", err)
	}
	s := &Server{cfg: cfg, roles: map[string]*cfn.Role{}, keys: map[string]*identity{}, subscribed: !cfg.ModelAccess.NotSubscribed}
	for _, r := range byLogical {
		s.roles[r.ARN] = r
	}
	// The instance role is the one of the instance profile.
	for _, r := range res {
		if cfn.Dig(r, "Type") != "AWS::IAM::InstanceProfile" {
			continue
		}
		names, _ := cfn.Dig(r, "Properties", "Roles").([]any)
		for _, role := range byLogical {
			if len(names) == 1 && role.Name == fmt.Sprint(names[0]) {
				s.instance = role
			}
		}
	}
	if s.instance == nil {
		return nil, fmt.Errorf("awsstandin: template %s has no instance profile with one of its roles", cfg.Template)
	}
	for k, secret := range cfg.InstanceKeys {
		s.keys[k] = &identity{secret: secret, role: s.instance, session: cfg.InstanceID}
	}
	if s.engine, err = startEngine(cfg.HarnessDir); err != nil {
		return nil, fmt.Errorf("awsstandin: %w", err)
	}
	// Validate every role's policies now (ReadOnlyAccess takes the engine
	// about a second), so a broken policy fails here and the first client
	// request is not slow.
	var warm []simulation
	for _, r := range byLogical {
		warm = append(warm, simulation{Principal: fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/standin", cfg.Partition, cfg.Account, r.Name),
			PrincipalArn: r.ARN, Account: cfg.Account, Action: "sts:GetCallerIdentity", Resource: "*", Identity: r.Identity})
	}
	if _, err := s.engine.decide(cfg.Account, warm); err != nil {
		_ = s.engine.close()
		return nil, fmt.Errorf("awsstandin: %w", err)
	}
	return s, nil
}

// Close stops the IAM engine.
func (s *Server) Close() error {
	return s.engine.close()
}

// Requests returns every request so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// apiError is an AWS error answer; the code is the query protocol's (STS),
// jsonCode maps it for the JSON ones (Bedrock).
type apiError struct {
	status    int
	code, msg string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func (e *apiError) jsonCode() string {
	switch e.code {
	case "SignatureDoesNotMatch":
		return "InvalidSignatureException"
	case "InvalidClientTokenId":
		return "UnrecognizedClientException"
	case "MissingAuthenticationToken", "IncompleteSignature", "ExpiredToken", "AccessDenied":
		return e.code + "Exception"
	}
	return e.code
}

func notImplemented(what string) *apiError {
	return &apiError{http.StatusBadRequest, "UnknownOperationException", "standin: " + what + " is not implemented"}
}

// statusWriter remembers the status answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// call is one request being answered.
type call struct {
	w    *statusWriter
	r    *http.Request
	body []byte
	rec  Request
	id   *identity // the signer, once authenticated
	json bool      // errors in the JSON protocols' shape (else STS's XML)
}

func (c *call) fail(err error) {
	e, ok := err.(*apiError)
	if !ok {
		e = &apiError{http.StatusInternalServerError, "InternalFailure", "standin: " + err.Error()}
	}
	c.rec.Error = e.code
	if c.json {
		c.rec.Error = e.jsonCode()
		c.w.Header().Set("Content-Type", "application/json")
		c.w.Header().Set("X-Amzn-Errortype", e.jsonCode())
		c.w.Header().Set("X-Amzn-Requestid", requestID())
		c.w.WriteHeader(e.status)
		msg := e.msg
		if e.code == "MissingAuthenticationToken" {
			msg = "Missing Authentication Token" // the JSON services' wording
		}
		b, _ := json.Marshal(map[string]string{"message": msg})
		_, _ = c.w.Write(b)
		return
	}
	typ := "Sender"
	if e.status >= 500 {
		typ = "Receiver"
	}
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(e.status)
	var b strings.Builder
	b.WriteString(`<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>` + typ + `</Type><Code>`)
	_ = xml.EscapeText(&b, []byte(e.code))
	b.WriteString(`</Code><Message>`)
	_ = xml.EscapeText(&b, []byte(e.msg))
	b.WriteString(`</Message></Error><RequestId>` + requestID() + `</RequestId></ErrorResponse>`)
	_, _ = c.w.Write([]byte(b.String()))
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// randomString is n characters of alphabet.
func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

const (
	upperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	secretChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// issue mints temporary credentials for role and remembers them.
func (s *Server) issue(role *cfn.Role, session string, d time.Duration) (akid string, id *identity) {
	tok := make([]byte, 96)
	_, _ = rand.Read(tok)
	id = &identity{secret: randomString(40, secretChars), token: base64.StdEncoding.EncodeToString(tok),
		role: role, session: session, expires: time.Now().Add(d).UTC().Truncate(time.Second)}
	akid = "ASIA" + randomString(16, upperDigits)
	s.mu.Lock()
	s.keys[akid] = id
	s.mu.Unlock()
	return akid, id
}

// ServeHTTP answers STS and Bedrock on one listener: the SigV4 credential
// scope's service picks STS or Bedrock, the path Bedrock's control plane or
// runtime.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{w: &statusWriter{ResponseWriter: w}, r: r}
	defer func() {
		c.rec.Status = c.w.status
		s.mu.Lock()
		s.reqs = append(s.reqs, c.rec)
		s.mu.Unlock()
		if s.cfg.OnRequest != nil {
			s.cfg.OnRequest(c.rec)
		}
	}()
	var err error
	c.body, err = io.ReadAll(io.LimitReader(r.Body, 20<<20))
	if err != nil {
		c.fail(err)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/model/"):
		c.rec.Service, c.json = "bedrock-runtime", true
	case r.URL.Path == "/" || r.URL.Path == "":
		c.rec.Service = "sts"
	default:
		c.rec.Service, c.json = "bedrock", true
	}
	if err := s.authenticate(c); err != nil {
		c.fail(err)
		return
	}
	switch c.rec.Service {
	case "sts":
		err = s.sts(c)
	case "bedrock":
		err = s.bedrockControl(c)
	default:
		err = s.bedrockRuntime(c)
	}
	if err != nil {
		c.fail(err)
	}
}

var errInvalidToken = &apiError{http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid."}

// authenticate checks the signature with the secret of the signing key and
// sets c.id.
func (s *Server) authenticate(c *call) error {
	h := c.r.Header.Get("Authorization")
	if h == "" {
		if c.r.URL.Query().Get("X-Amz-Signature") != "" {
			return notImplemented("SigV4 presigned URLs (query-string authentication)")
		}
		return &apiError{http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token"}
	}
	a, err := parseAuthorization(h)
	if err != nil {
		return &apiError{http.StatusBadRequest, "IncompleteSignature", err.Error()}
	}
	c.rec.AccessKey = a.AccessKey
	switch {
	case a.Service == "sts" && c.rec.Service == "sts":
	case a.Service == "bedrock" && c.rec.Service != "sts":
	case a.Service == "bedrock-runtime" && c.rec.Service == "bedrock-runtime":
	default:
		return notImplemented(fmt.Sprintf("service %q at %s %s", a.Service, c.r.Method, c.r.URL.Path))
	}
	if a.Region != s.cfg.Region && (c.rec.Service != "sts" || a.Region != "us-east-1") {
		return signatureError(fmt.Sprintf("Credential should be scoped to a valid region, not '%s' (the stand-in serves %s)", a.Region, s.cfg.Region))
	}
	s.mu.Lock()
	id := s.keys[a.AccessKey]
	s.mu.Unlock()
	if id == nil {
		return errInvalidToken
	}
	c.rec.Role, c.rec.Session = id.role.ARN, id.session
	if err := verify(c.r, c.body, a, id.secret); err != nil {
		return err
	}
	// Issued keys carry their token; the instance keys' token is the IMDS
	// mock's choice and is not checked.
	if id.token != "" && id.token != c.r.Header.Get("X-Amz-Security-Token") {
		return errInvalidToken
	}
	if !id.expires.IsZero() && time.Now().After(id.expires) {
		return &apiError{http.StatusForbidden, "ExpiredToken", "The security token included in the request is expired"}
	}
	c.id = id
	return nil
}

// authorize decides c's action on every resource with the caller's
// policies (and trust, for AssumeRole): allowed only if every one is.
// c.rec gets the decision and the resource that decided it.
func (s *Server) authorize(c *call, action string, resources []string, trust any) (bool, error) {
	c.rec.Action = action
	c.rec.Resource = resources[0]
	var sims []simulation
	for _, res := range resources {
		sims = append(sims, simulation{
			Principal: c.id.principal(s.cfg.Partition, s.cfg.Account), PrincipalArn: c.id.role.ARN, Account: s.cfg.Account,
			Action: action, Resource: res, Identity: c.id.role.Identity, Trust: trust,
			// The Region-less model ARN of global profiles does not fit
			// iam-data's foundation-model ARN (it has a Region).
			Unvalidated: strings.Contains(res, ":bedrock:::"),
		})
	}
	got, err := s.engine.decide(s.cfg.Account, sims)
	if err != nil {
		return false, err
	}
	c.rec.Decision = "Allowed"
	for i, d := range got {
		// The first resource denied, or the first explicitly denied.
		if d != "Allowed" && (c.rec.Decision == "Allowed" || d == "ExplicitlyDenied" && c.rec.Decision != d) {
			c.rec.Decision, c.rec.Resource = d, resources[i]
		}
	}
	return c.rec.Decision == "Allowed", nil
}

// accessDenied is AWS's answer to a denied request.
func (s *Server) accessDenied(c *call) *apiError {
	why := "because no identity-based policy allows the " + c.rec.Action + " action"
	if c.rec.Decision == "ExplicitlyDenied" {
		why = "with an explicit deny in an identity-based policy"
	}
	if c.rec.Service == "sts" {
		why = "" // STS's message names no reason
	}
	msg := fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s", c.id.principal(s.cfg.Partition, s.cfg.Account), c.rec.Action, c.rec.Resource)
	if why != "" {
		msg += " " + why
	}
	return &apiError{http.StatusForbidden, "AccessDenied", msg}
}
