package awsstandin

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/ccboot/ccboot/packaging/cfn"
)

// The request bodies in testdata are Claude Code 2.1.332's own, trimmed
// (long texts cut, only the Bash and Read tools kept, IDs zeroed; shapes
// unchanged). The three turns come from e2e scenario 12's agent session
// (claude-ro -p --permission-mode bypassPermissions as ec2-user, against
// aws-standin --agent-script with the script below): the first turn, the
// turn carrying the first tool_result, the turn carrying the second. The
// availability probe (max_tokens 1) is from a run of the same binary on
// the host; with the models pinned the guest sends none to this stand-in.
var capturedScript = []string{
	"aws sts get-caller-identity --profile claudecode-elevated --output json",
	"AWS_PROFILE=claudecode-elevated aws sts get-caller-identity --output json",
}

// capturedResult is how each tool result of the capture starts.
const capturedResult = "{\n    \"UserId\": \"AROAGQMXDTWLV2JGYGD6W:claudecode-elevated-session\",\n    \"Account\": \"246813579135\",\n    \"Arn\": \"arn:aws:sts::246813579135:assumed-role/claudecode-elevated-cce2e/claudecode-elevated-session\"\n}\n"

func captured(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "claude-code-2.1.332-"+name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// standinAgent serves the template with the agent script.
func standinAgent(t *testing.T, script []string) (*Server, string, aws.Credentials) {
	t.Helper()
	policies, err := cfn.ManagedPoliciesDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	s, url := Serve(t, Config{Template: templatePath, PoliciesDir: policies, HarnessDir: "../iam", StackName: stackName,
		Region: region, Account: account, Partition: "aws", InstanceKeys: map[string]string{instanceKey: instanceSec},
		AgentScript: script})
	ro, err := assume(t, url, instanceCreds, readOnlyARN, roSession)
	if err != nil {
		t.Fatal(err)
	}
	return s, url, ro
}

// turn is one assistant answer as Claude Code reads it.
type turn struct {
	events          []string // stream event types (nil for InvokeModel)
	blockType, text string   // the one content block: text, or tool_use
	toolName, input string   // tool_use: its name and input JSON
	toolID          string
	stopReason      string
}

// streamTurn sends body to InvokeModelWithResponseStream and reassembles
// the answer from its events, as a client of the Messages stream does.
func streamTurn(url string, c aws.Credentials, body []byte) (turn, error) {
	out, err := runtimeClient(url, c).InvokeModelWithResponseStream(context.Background(), &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String(sonnetEU), Body: body, ContentType: aws.String("application/json")})
	if err != nil {
		return turn{}, err
	}
	es := out.GetStream()
	defer es.Close()
	var tr turn
	var input strings.Builder
	for ev := range es.Events() {
		chunk, ok := ev.(*types.ResponseStreamMemberChunk)
		if !ok {
			return turn{}, errors.New("event of another type")
		}
		var e struct {
			Type         string
			ContentBlock struct{ Type, ID, Name string } `json:"content_block"`
			Delta        struct {
				Type, Text  string
				PartialJSON string `json:"partial_json"`
				StopReason  string `json:"stop_reason"`
			}
		}
		if err := json.Unmarshal(chunk.Value.Bytes, &e); err != nil {
			return turn{}, err
		}
		tr.events = append(tr.events, e.Type)
		switch e.Type {
		case "content_block_start":
			tr.blockType, tr.toolID, tr.toolName = e.ContentBlock.Type, e.ContentBlock.ID, e.ContentBlock.Name
		case "content_block_delta":
			tr.text += e.Delta.Text
			input.WriteString(e.Delta.PartialJSON)
		case "message_delta":
			tr.stopReason = e.Delta.StopReason
		}
	}
	tr.input = input.String()
	return tr, es.Err()
}

func invokeTurn(url string, c aws.Credentials, body []byte) (turn, error) {
	out, err := runtimeClient(url, c).InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(sonnetEU), Body: body, ContentType: aws.String("application/json")})
	if err != nil {
		return turn{}, err
	}
	var msg struct {
		Content []struct {
			Type, Text, ID, Name string
			Input                json.RawMessage
		}
		StopReason string `json:"stop_reason"`
	}
	if err := json.Unmarshal(out.Body, &msg); err != nil || len(msg.Content) != 1 {
		return turn{}, errors.New("answer " + string(out.Body))
	}
	b := msg.Content[0]
	return turn{blockType: b.Type, text: b.Text, toolName: b.Name, toolID: b.ID, input: string(b.Input), stopReason: msg.StopReason}, nil
}

// wantToolUse fails unless tr asks Bash to run command.
func wantToolUse(t *testing.T, what string, tr turn, command string) {
	t.Helper()
	var in map[string]string
	if err := json.Unmarshal([]byte(tr.input), &in); err != nil || tr.blockType != "tool_use" || tr.toolName != "Bash" ||
		in["command"] != command || in["description"] == "" || len(in) != 2 || !strings.HasPrefix(tr.toolID, "toolu_") || tr.stopReason != "tool_use" {
		t.Errorf("%s: %+v (input %v, %v); want a tool_use of Bash with command %q and a description, stop_reason tool_use", what, tr, in, err, command)
	}
}

// A conversation as Claude Code holds it: the first turn gets a tool_use
// of Bash for the script's first command; a turn ending in its
// tool_result gets the next command, and the log records the result with
// the command it answers; after the last, text and end_turn. Probes are
// answered with text.
func TestAgentScriptConversation(t *testing.T) {
	s, url, ro := standinAgent(t, capturedScript)
	n0 := len(s.Requests())

	tr, err := streamTurn(url, ro, captured(t, "first-turn"))
	if err != nil {
		t.Fatal(err)
	}
	wantToolUse(t, "first turn (stream)", tr, capturedScript[0])
	if !slices.Equal(tr.events, wantEvents) {
		t.Errorf("first turn events %v, want %v", tr.events, wantEvents)
	}
	tr, err = invokeTurn(url, ro, captured(t, "first-turn"))
	if err != nil {
		t.Fatal(err)
	}
	wantToolUse(t, "first turn (invoke)", tr, capturedScript[0])

	tr, err = streamTurn(url, ro, captured(t, "tool-result-turn"))
	if err != nil {
		t.Fatal(err)
	}
	wantToolUse(t, "after the first tool_result", tr, capturedScript[1])

	tr, err = streamTurn(url, ro, captured(t, "last-tool-result-turn"))
	if err != nil {
		t.Fatal(err)
	}
	done := "standin: agent script done (2 commands): role=claudecode-readonly-" + stackName + " session=" + roSession + " model=" + sonnetEU
	if tr.blockType != "text" || tr.text != done || tr.stopReason != "end_turn" {
		t.Errorf("after the last tool_result: %+v; want text %q, end_turn", tr, done)
	}

	// A probe (max_tokens 1, no tools) is not a turn of the script.
	if tr, err = invokeTurn(url, ro, captured(t, "probe")); err != nil || tr.blockType != "text" || tr.stopReason != "end_turn" {
		t.Errorf("probe: %+v, %v; want text, end_turn", tr, err)
	}

	reqs := s.Requests()[n0:]
	if len(reqs) != 5 {
		t.Fatalf("%d requests recorded, want 5", len(reqs))
	}
	for i, want := range []struct {
		toolUse string
		results []ToolResult
	}{
		{capturedScript[0], nil},
		{capturedScript[0], nil},
		{capturedScript[1], []ToolResult{{Command: capturedScript[0], Text: capturedResult}}},
		{"", []ToolResult{{Command: capturedScript[1], Text: capturedResult}}},
		{"", nil},
	} {
		r := reqs[i]
		if r.ToolUse != want.toolUse || len(r.ToolResults) != len(want.results) || r.Role != readOnlyARN || r.Status != 200 {
			t.Errorf("request %d recorded as %+v; want toolUse %q and %d tool results", i, r, want.toolUse, len(want.results))
			continue
		}
		for j, w := range want.results {
			g := r.ToolResults[j]
			if g.Command != w.Command || !strings.HasPrefix(g.Text, w.Text) || g.IsError != w.IsError || !strings.HasPrefix(g.ToolUseID, "toolu_bdrk_") {
				t.Errorf("request %d tool result %d: %+v; want command %q, text starting %q, is_error %v", i, j, g, w.Command, w.Text, w.IsError)
			}
		}
	}
	// The log line carries them as the e2e reads them.
	b, _ := json.Marshal(reqs[3])
	if !strings.Contains(string(b), `"toolResults":[{"toolUseId":"toolu_bdrk_`) || !strings.Contains(string(b), `"isError":false`) {
		t.Errorf("log line %s", b)
	}

	// A failed command (what a refusal looks like: Claude Code sends
	// "Exit code N" and the output as text blocks, is_error true) is
	// recorded as such.
	var last map[string]any
	if err := json.Unmarshal(captured(t, "last-tool-result-turn"), &last); err != nil {
		t.Fatal(err)
	}
	msgs := last["messages"].([]any)
	res := msgs[len(msgs)-1].(map[string]any)["content"].([]any)[0].(map[string]any)
	res["is_error"] = true
	res["content"] = []map[string]string{{"type": "text", "text": "Exit code 254\n\nAn error occurred (AccessDenied)"}, {"type": "image"}, {"type": "text", "text": "second block"}}
	b, _ = json.Marshal(last)
	if _, err := streamTurn(url, ro, b); err != nil {
		t.Fatal(err)
	}
	rs := s.Requests()[len(s.Requests())-1].ToolResults
	if len(rs) != 1 || !rs[0].IsError || rs[0].Command != capturedScript[1] || rs[0].Text != "Exit code 254\n\nAn error occurred (AccessDenied)\nsecond block" {
		t.Errorf("failed command recorded as %+v", rs)
	}
}

// Without a script every turn is text, tools or not: the stand-in's
// default answer is unchanged.
func TestNoAgentScriptAnswersText(t *testing.T) {
	_, url, ro := standinAgent(t, nil)
	tr, err := streamTurn(url, ro, captured(t, "first-turn"))
	if want := "standin: role=claudecode-readonly-" + stackName + " session=" + roSession + " model=" + sonnetEU; err != nil || tr.blockType != "text" || tr.text != want || tr.stopReason != "end_turn" {
		t.Errorf("first turn without a script: %+v, %v; want text %q", tr, err, want)
	}
}

// A turn whose tools array lacks Bash, or whose Bash takes other input, is
// refused loudly (the commands would otherwise never run, silently).
func TestAgentScriptNeedsBashTool(t *testing.T) {
	s, url, ro := standinAgent(t, capturedScript)
	var body map[string]any
	if err := json.Unmarshal(captured(t, "first-turn"), &body); err != nil {
		t.Fatal(err)
	}
	bash := func(tools []any) map[string]any {
		for _, tool := range tools {
			if m := tool.(map[string]any); m["name"] == "Bash" {
				return m
			}
		}
		t.Fatal("the captured first turn has no Bash tool")
		return nil
	}
	tools := body["tools"].([]any)
	for _, c := range []struct {
		name   string
		edit   func() any
		wantIn string
	}{
		{"no tools", func() any { return nil }, `the request's tools array offers no "Bash" tool`},
		{"Bash renamed", func() any {
			b, _ := json.Marshal(tools)
			var ts []any
			_ = json.Unmarshal(b, &ts)
			bash(ts)["name"] = "Shell"
			return ts
		}, `the request's tools array offers no "Bash" tool (it offers [Shell Read])`},
		{"Bash without description", func() any {
			b, _ := json.Marshal(tools)
			var ts []any
			_ = json.Unmarshal(b, &ts)
			delete(bash(ts)["input_schema"].(map[string]any)["properties"].(map[string]any), "description")
			return ts
		}, `the Bash tool's input_schema has no string property "description"`},
		{"Bash requires more", func() any {
			b, _ := json.Marshal(tools)
			var ts []any
			_ = json.Unmarshal(b, &ts)
			bash(ts)["input_schema"].(map[string]any)["required"] = []string{"command", "cwd"}
			return ts
		}, `the Bash tool requires input "cwd"`},
	} {
		body["tools"] = c.edit()
		b, _ := json.Marshal(body)
		_, err := streamTurn(url, ro, b)
		wantError(t, c.name, err, "ValidationException", "standin: agent script: "+c.wantIn)
		if r := s.Requests()[len(s.Requests())-1]; r.Error != "ValidationException" || r.ToolUse != "" || r.Status != 400 {
			t.Errorf("%s: recorded as %+v", c.name, r)
		}
	}
}

func TestReadAgentScript(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "script")
	if err := os.WriteFile(p, []byte("# try the other profile\naws sts get-caller-identity --profile claudecode-elevated\n\n  AWS_PROFILE=claudecode-elevated aws sts get-caller-identity  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAgentScript(p)
	if want := []string{"aws sts get-caller-identity --profile claudecode-elevated", "AWS_PROFILE=claudecode-elevated aws sts get-caller-identity"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("ReadAgentScript: %q, %v; want %q", got, err, want)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("# nothing\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAgentScript(empty); err == nil || !strings.Contains(err.Error(), "holds no command; fix: write one shell command per line") {
		t.Errorf("empty script: %v", err)
	}
	if _, err := ReadAgentScript(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "agent script: open ") {
		t.Errorf("missing script: %v", err)
	}
}

// A conversation turn's log record holds its messages as text (without
// Claude Code's reminder blocks: the first is the prompt alone) and the working directory it names; an
// availability probe's holds neither. Scenario 13 reads these to prove a
// resumed session carries the conversation before it.
func TestLogKeepsConversation(t *testing.T) {
	s, url, ro := standinAgent(t, nil)
	if _, err := streamTurn(url, ro, captured(t, "tool-result-turn")); err != nil {
		t.Fatal(err)
	}
	if _, err := invokeTurn(url, ro, captured(t, "probe")); err != nil {
		t.Fatal(err)
	}
	reqs := s.Requests()
	turn, probe := reqs[len(reqs)-2], reqs[len(reqs)-1]
	if turn.WorkDir != "/home/ec2-user" {
		t.Errorf("workDir %q, want /home/ec2-user (from the environment reminder)", turn.WorkDir)
	}
	var roles []string
	for _, m := range turn.Messages {
		roles = append(roles, m.Role)
	}
	if !slices.Equal(roles, []string{"user", "assistant", "user"}) || turn.Messages[0].Text != "Find out which AWS identity you have." ||
		!strings.HasPrefix(turn.Messages[2].Text, capturedResult) {
		t.Errorf("messages %+v, want the prompt, the tool_use turn and the tool result", turn.Messages)
	}
	if probe.Messages != nil || probe.WorkDir != "" {
		t.Errorf("the probe's record keeps %+v %q, want nothing", probe.Messages, probe.WorkDir)
	}
}
