package awsstandin

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// Bedrock's control plane (REST JSON): ListInferenceProfiles,
// GetInferenceProfile, ListFoundationModels, GetFoundationModel,
// GetFoundationModelAvailability (access.go).

func writeJSON(c *call, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("X-Amzn-Requestid", requestID())
	c.w.WriteHeader(http.StatusOK)
	_, err = c.w.Write(b)
	return err
}

var errInvalidModel = &apiError{http.StatusBadRequest, "ValidationException", "The provided model identifier is invalid."}

func (s *Server) bedrockControl(c *call) error {
	// The path with %-escapes decoded once: IDs and ARNs come escaped.
	path := c.r.URL.Path
	if c.r.Method != http.MethodGet {
		return notImplemented(fmt.Sprintf("bedrock %s %s", c.r.Method, path))
	}
	switch {
	case path == "/inference-profiles":
		return s.listInferenceProfiles(c)
	case strings.HasPrefix(path, "/inference-profiles/"):
		return s.getInferenceProfile(c, strings.TrimPrefix(path, "/inference-profiles/"))
	case path == "/foundation-models":
		return s.listFoundationModels(c)
	case strings.HasPrefix(path, "/foundation-models/"):
		return s.getFoundationModel(c, strings.TrimPrefix(path, "/foundation-models/"))
	}
	if id, ok := availabilityModelID(path); ok {
		return s.getFoundationModelAvailability(c, id)
	}
	return notImplemented(fmt.Sprintf("bedrock %s %s", c.r.Method, path))
}

func (s *Server) profileJSON(p *profile) map[string]any {
	var routes []map[string]string
	arns := s.routes(p)
	if p.Prefix == globalPrefix {
		arns = arns[:1] // the source Region's; the Region-less ARN is for IAM only
	}
	for _, a := range arns {
		routes = append(routes, map[string]string{"modelArn": a})
	}
	geo := strings.ToUpper(p.Prefix)
	if p.Prefix == globalPrefix {
		geo = "Global"
	}
	return map[string]any{
		"inferenceProfileName": geo + " Anthropic " + p.Model.Name, "inferenceProfileId": p.ID,
		"inferenceProfileArn": s.profileARN(p.ID),
		"description":         "Routes requests to Anthropic " + p.Model.Name + " in " + geo + " Regions.",
		"createdAt":           p.Model.Created, "updatedAt": p.Model.Created,
		"models": routes, "status": "ACTIVE", "type": "SYSTEM_DEFINED",
	}
}

func (s *Server) listInferenceProfiles(c *call) error {
	ok, err := s.authorize(c, "bedrock:ListInferenceProfiles", []string{"*"}, nil)
	if err != nil {
		return err
	}
	if !ok {
		return s.accessDenied(c)
	}
	q := c.r.URL.Query()
	var all []*profile
	switch q.Get("type") {
	case "", "SYSTEM_DEFINED":
		all = regionProfiles(s.cfg.Region)
	case "APPLICATION": // the stand-in has no application inference profiles
	default:
		return &apiError{http.StatusBadRequest, "ValidationException", fmt.Sprintf("1 validation error detected: Value '%s' at 'typeEquals' failed to satisfy constraint: Member must satisfy enum value set: [SYSTEM_DEFINED, APPLICATION]", q.Get("type"))}
	}
	page, next, err := paginate(len(all), q.Get("maxResults"), q.Get("nextToken"))
	if err != nil {
		return err
	}
	out := []map[string]any{}
	for _, p := range all[page[0]:page[1]] {
		out = append(out, s.profileJSON(p))
	}
	resp := map[string]any{"inferenceProfileSummaries": out}
	if next != "" {
		resp["nextToken"] = next
	}
	return writeJSON(c, resp)
}

// paginate returns the [from, to) of a page of n items, and the next token.
func paginate(n int, maxResults, token string) ([2]int, string, error) {
	size := 1000
	if maxResults != "" {
		m, err := strconv.Atoi(maxResults)
		if err != nil || m < 1 || m > 1000 {
			return [2]int{}, "", &apiError{http.StatusBadRequest, "ValidationException", fmt.Sprintf("1 validation error detected: Value '%s' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 1000", maxResults)}
		}
		size = m
	}
	from := 0
	if token != "" {
		b, err := base64.RawURLEncoding.DecodeString(token)
		from, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "standin:"))
		if err != nil || err2 != nil || from < 0 || from > n {
			return [2]int{}, "", &apiError{http.StatusBadRequest, "ValidationException", "The nextToken is invalid."}
		}
		to := min(from+size, n)
		next := ""
		if to < n {
			next = base64.RawURLEncoding.EncodeToString([]byte("standin:" + strconv.Itoa(to)))
		}
		return [2]int{from, to}, next, nil
	}
	to := min(from+size, n)
	next := ""
	if to < n {
		next = base64.RawURLEncoding.EncodeToString([]byte("standin:" + strconv.Itoa(to)))
	}
	return [2]int{from, to}, next, nil
}

// profileID takes a profile ID or its ARN in this Region and account.
func (s *Server) profileID(ident string) string {
	return strings.TrimPrefix(ident, s.profileARN(""))
}

func (s *Server) getInferenceProfile(c *call, ident string) error {
	id := s.profileID(ident)
	c.rec.ModelID = id
	ok, err := s.authorize(c, "bedrock:GetInferenceProfile", []string{s.profileARN(id)}, nil)
	if err != nil {
		return err
	}
	if !ok {
		return s.accessDenied(c)
	}
	p := profileFor(s.cfg.Region, id)
	if p == nil {
		return &apiError{http.StatusNotFound, "ResourceNotFoundException", fmt.Sprintf("Inference profile %s not found in %s.", id, s.cfg.Region)}
	}
	return writeJSON(c, s.profileJSON(p))
}

func (s *Server) modelJSON(m *model) map[string]any {
	return map[string]any{
		"modelArn": s.modelARN(s.cfg.Region, m.ID), "modelId": m.ID, "modelName": m.Name, "providerName": "Anthropic",
		"inputModalities": []string{"TEXT", "IMAGE"}, "outputModalities": []string{"TEXT"},
		"responseStreamingSupported": true, "customizationsSupported": []string{},
		"inferenceTypesSupported": []string{"INFERENCE_PROFILE"}, "modelLifecycle": map[string]string{"status": "ACTIVE"},
	}
}

func (s *Server) listFoundationModels(c *call) error {
	ok, err := s.authorize(c, "bedrock:ListFoundationModels", []string{"*"}, nil)
	if err != nil {
		return err
	}
	if !ok {
		return s.accessDenied(c)
	}
	q := c.r.URL.Query()
	for k := range q {
		if k != "byProvider" {
			return notImplemented("ListFoundationModels filter " + k + " (byProvider is)")
		}
	}
	out := []map[string]any{}
	for _, m := range regionModels(s.cfg.Region) {
		if p := q.Get("byProvider"); p == "" || strings.EqualFold(p, "anthropic") {
			out = append(out, s.modelJSON(m))
		}
	}
	return writeJSON(c, map[string]any{"modelSummaries": out})
}

func (s *Server) getFoundationModel(c *call, ident string) error {
	id := ident
	if i := strings.Index(ident, ":foundation-model/"); strings.HasPrefix(ident, "arn:") && i >= 0 {
		id = ident[i+len(":foundation-model/"):]
	}
	c.rec.ModelID = id
	ok, err := s.authorize(c, "bedrock:GetFoundationModel", []string{s.modelARN(s.cfg.Region, id)}, nil)
	if err != nil {
		return err
	}
	if !ok {
		return s.accessDenied(c)
	}
	for _, m := range regionModels(s.cfg.Region) {
		if m.ID == id {
			return writeJSON(c, map[string]any{"modelDetails": s.modelJSON(m)})
		}
	}
	return errInvalidModel
}

// Bedrock runtime: InvokeModel and InvokeModelWithResponseStream with an
// Anthropic Messages API body.

func (s *Server) bedrockRuntime(c *call) error {
	rest := strings.TrimPrefix(c.r.URL.Path, "/model/")
	i := strings.LastIndex(rest, "/")
	if i < 0 || c.r.Method != http.MethodPost {
		return notImplemented(fmt.Sprintf("bedrock-runtime %s %s", c.r.Method, c.r.URL.Path))
	}
	ident, op := rest[:i], rest[i+1:]
	var action string
	switch op {
	case "invoke":
		action = "bedrock:InvokeModel"
	case "invoke-with-response-stream":
		action = "bedrock:InvokeModelWithResponseStream"
	default:
		return notImplemented(fmt.Sprintf("bedrock-runtime %s %s", c.r.Method, c.r.URL.Path))
	}
	c.rec.Action = action
	id := s.profileID(ident)
	c.rec.ModelID = id
	if strings.HasPrefix(id, "arn:") {
		return notImplemented("invoking by ARN other than this Region's and account's inference profiles (" + id + ")")
	}
	p := profileFor(s.cfg.Region, id)
	if p == nil {
		if _, _, isProfile := splitProfile(id); !isProfile && findModel(id) != nil {
			return &apiError{http.StatusBadRequest, "ValidationException", fmt.Sprintf("Invocation of model ID %s with on-demand throughput isn’t supported. Retry your request with the ID or ARN of an inference profile that contains this model.", id)}
		}
		return errInvalidModel
	}
	// Cross-Region inference is authorized on the profile and on the
	// foundation model in each Region it routes to.
	ok, err := s.authorize(c, action, append([]string{s.profileARN(p.ID)}, s.routes(p)...), nil)
	if err != nil {
		return err
	}
	if !ok {
		return s.accessDenied(c)
	}
	if err := s.modelAccess(c); err != nil {
		return err
	}
	var req struct {
		AnthropicVersion string            `json:"anthropic_version"`
		MaxTokens        *int              `json:"max_tokens"`
		Messages         []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(c.body, &req); err != nil {
		return &apiError{http.StatusBadRequest, "ValidationException", "Malformed input request: the body is not JSON, please reformat your input and try again."}
	}
	switch {
	case req.AnthropicVersion == "":
		return &apiError{http.StatusBadRequest, "ValidationException", "Malformed input request: #: required key [anthropic_version] not found, please reformat your input and try again."}
	case req.MaxTokens == nil:
		return &apiError{http.StatusBadRequest, "ValidationException", "Malformed input request: #: required key [max_tokens] not found, please reformat your input and try again."}
	case len(req.Messages) == 0:
		return &apiError{http.StatusBadRequest, "ValidationException", "Malformed input request: #: required key [messages] not found, please reformat your input and try again."}
	}
	if *req.MaxTokens > 1 {
		c.rec.Messages, c.rec.WorkDir = conversation(c.body)
	}
	text := fmt.Sprintf("standin: role=%s session=%s model=%s", c.id.role.Name, c.id.session, id)
	stop := "end_turn"
	var tool *agentTurn
	if len(s.cfg.AgentScript) > 0 {
		turn, scripted, err := s.agentReply(c)
		if err != nil {
			return err
		}
		switch {
		case scripted && turn.command != "":
			tool, stop = &turn, "tool_use"
		case scripted:
			text = fmt.Sprintf("standin: agent script done (%d commands): role=%s session=%s model=%s", len(s.cfg.AgentScript), c.id.role.Name, c.id.session, id)
		}
	}
	in, outTokens := len(c.body)/4+1, len(strings.Fields(text))+1
	msgID := "msg_bdrk_" + randomString(24, secretChars[:62])
	model := strings.TrimPrefix(p.Model.ID, "anthropic.")
	// The one content block: the text, or the tool_use with its input
	// (whole here, streamed as one input_json_delta).
	block := map[string]any{"type": "text", "text": text}
	start := map[string]any{"type": "text", "text": ""}
	delta := map[string]any{"type": "text_delta", "text": text}
	if tool != nil {
		input, err := json.Marshal(map[string]string{"command": tool.command, "description": tool.description})
		if err != nil {
			return err
		}
		toolID := toolUseID()
		block = map[string]any{"type": "tool_use", "id": toolID, "name": bashTool, "input": json.RawMessage(input)}
		start = map[string]any{"type": "tool_use", "id": toolID, "name": bashTool, "input": map[string]any{}}
		delta = map[string]any{"type": "input_json_delta", "partial_json": string(input)}
		outTokens = len(input)/4 + 1
	}
	if op == "invoke" {
		return writeJSON(c, map[string]any{
			"id": msgID, "type": "message", "role": "assistant", "model": model,
			"content":     []map[string]any{block},
			"stop_reason": stop, "stop_sequence": nil,
			"usage": map[string]int{"input_tokens": in, "output_tokens": outTokens},
		})
	}
	events := []map[string]any{
		{"type": "message_start", "message": map[string]any{"id": msgID, "type": "message", "role": "assistant", "model": model,
			"content": []any{}, "stop_reason": nil, "stop_sequence": nil, "usage": map[string]int{"input_tokens": in, "output_tokens": 1}}},
		{"type": "content_block_start", "index": 0, "content_block": start},
		{"type": "content_block_delta", "index": 0, "delta": delta},
		{"type": "content_block_stop", "index": 0},
		{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]int{"output_tokens": outTokens}},
		{"type": "message_stop", "amazon-bedrock-invocationMetrics": map[string]int{"inputTokenCount": in, "outputTokenCount": outTokens,
			"invocationLatency": 1, "firstByteLatency": 1}},
	}
	c.w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	c.w.Header().Set("X-Amzn-Bedrock-Content-Type", "application/json")
	c.w.Header().Set("X-Amzn-Requestid", requestID())
	c.w.WriteHeader(http.StatusOK)
	enc := eventstream.NewEncoder()
	for _, ev := range events {
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		payload, err := json.Marshal(map[string]string{"bytes": base64.StdEncoding.EncodeToString(data)})
		if err != nil {
			return err
		}
		var frame bytes.Buffer
		if err := enc.Encode(&frame, eventstream.Message{
			Headers: eventstream.Headers{
				{Name: ":event-type", Value: eventstream.StringValue("chunk")},
				{Name: ":content-type", Value: eventstream.StringValue("application/json")},
				{Name: ":message-type", Value: eventstream.StringValue("event")},
			},
			Payload: payload,
		}); err != nil {
			return err
		}
		if _, err := c.w.Write(frame.Bytes()); err != nil {
			return nil // the client went away; the status is already sent
		}
		c.w.Flush()
	}
	return nil
}
