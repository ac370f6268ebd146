package awsstandin

import (
	"crypto/sha256"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// STS speaks the query protocol (form-encoded Action=...&Version=..., XML
// answers): the AWS CLI v2, the JS SDK v3 and the Go SDK v2 all call STS
// with it.

const stsNS = "https://sts.amazonaws.com/doc/2011-06-15/"

func (s *Server) sts(c *call) error {
	if t := c.r.Header.Get("X-Amz-Target"); t != "" {
		return notImplemented("STS over the AWS JSON protocol (X-Amz-Target " + t + "); clients call STS with the query protocol")
	}
	form := c.r.URL.Query()
	if c.r.Method == http.MethodPost {
		body, err := url.ParseQuery(string(c.body))
		if err != nil {
			return &apiError{http.StatusBadRequest, "MalformedQueryString", "standin: the form body does not parse: " + err.Error()}
		}
		for k, v := range body {
			form[k] = v
		}
	}
	switch a := form.Get("Action"); a {
	case "AssumeRole":
		return s.assumeRole(c, form)
	case "GetCallerIdentity":
		return s.getCallerIdentity(c)
	default:
		c.rec.Action = "sts:" + a
		return &apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("standin: STS action %q is not implemented (AssumeRole and GetCallerIdentity are)", a)}
	}
}

// roleID is the role's unique ID (AROA...), stable for its ARN.
func roleID(arn string) string {
	sum := sha256.Sum256([]byte(arn))
	var b strings.Builder
	b.WriteString("AROA")
	for _, x := range sum[:17] {
		b.WriteByte(upperDigits[int(x)%len(upperDigits)])
	}
	return b.String()
}

func writeXML(c *call, v any) error {
	b, err := xml.Marshal(v)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "text/xml")
	c.w.WriteHeader(http.StatusOK)
	_, err = c.w.Write(append([]byte(xml.Header), b...))
	return err
}

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

var sessionName = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

func validationError(msg string) *apiError {
	return &apiError{http.StatusBadRequest, "ValidationError", msg}
}

func (s *Server) assumeRole(c *call, form url.Values) error {
	c.rec.Action = "sts:AssumeRole"
	arn, session := form.Get("RoleArn"), form.Get("RoleSessionName")
	switch {
	case arn == "":
		return validationError("1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
	case session == "":
		return validationError("1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
	case !sessionName.MatchString(session):
		return validationError(fmt.Sprintf("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*", session))
	}
	for k := range form {
		if k == "Policy" || strings.HasPrefix(k, "PolicyArns.") {
			return notImplemented("AssumeRole session policies (" + k + ")")
		}
	}
	duration := time.Hour
	if d := form.Get("DurationSeconds"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 900 || n > 43200 {
			return validationError(fmt.Sprintf("1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200", d))
		}
		duration = time.Duration(n) * time.Second
	}
	// Keys issued by AssumeRole are role sessions: a chained session lasts
	// an hour at most.
	if !c.id.expires.IsZero() && duration > time.Hour {
		return validationError("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
	}
	target := s.roles[arn]
	c.rec.Resource = arn
	if target == nil {
		// No role of the template: no trust policy allows anyone.
		c.rec.Decision = "ImplicitlyDenied"
		return s.accessDenied(c)
	}
	ok, err := s.authorize(c, "sts:AssumeRole", []string{arn}, target.Trust)
	if err != nil {
		return err
	}
	if !ok {
		return s.accessDenied(c)
	}
	akid, id := s.issue(target, session, duration)
	type credentials struct {
		AccessKeyID     string `xml:"AccessKeyId"`
		SecretAccessKey string
		SessionToken    string
		Expiration      string
	}
	type result struct {
		Credentials     credentials
		AssumedRoleUser struct {
			AssumedRoleID string `xml:"AssumedRoleId"`
			Arn           string
		}
	}
	type response struct {
		XMLName  xml.Name         `xml:"AssumeRoleResponse"`
		NS       string           `xml:"xmlns,attr"`
		Result   result           `xml:"AssumeRoleResult"`
		Metadata responseMetadata `xml:"ResponseMetadata"`
	}
	resp := response{NS: stsNS, Metadata: responseMetadata{requestID()}}
	resp.Result.Credentials = credentials{akid, id.secret, id.token, id.expires.Format(time.RFC3339)}
	resp.Result.AssumedRoleUser.AssumedRoleID = roleID(target.ARN) + ":" + session
	resp.Result.AssumedRoleUser.Arn = id.principal(s.cfg.Partition, s.cfg.Account)
	return writeXML(c, resp)
}

// getCallerIdentity needs no permission, as on AWS.
func (s *Server) getCallerIdentity(c *call) error {
	c.rec.Action = "sts:GetCallerIdentity"
	type response struct {
		XMLName xml.Name `xml:"GetCallerIdentityResponse"`
		NS      string   `xml:"xmlns,attr"`
		Result  struct {
			Arn     string
			UserID  string `xml:"UserId"`
			Account string
		} `xml:"GetCallerIdentityResult"`
		Metadata responseMetadata `xml:"ResponseMetadata"`
	}
	resp := response{NS: stsNS, Metadata: responseMetadata{requestID()}}
	resp.Result.Arn = c.id.principal(s.cfg.Partition, s.cfg.Account)
	resp.Result.UserID = roleID(c.id.role.ARN) + ":" + c.id.session
	resp.Result.Account = s.cfg.Account
	return writeXML(c, resp)
}
