package awsstandin

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
)

// The scripted agent: with Config.AgentScript set, Bedrock plays a model
// that asks Claude Code's Bash tool to run each command of the script in
// turn, one tool_use per turn, and then ends the conversation with text.
// It keeps no state: where a conversation is comes from its messages (how
// many tool_use blocks the assistant turns hold), so retries and parallel
// conversations need nothing.

// bashTool is the name of Claude Code's shell tool; its input is
// {"command", "description"}.
const bashTool = "Bash"

// maxToolResultText bounds the text of one tool_result kept in the log.
const maxToolResultText = 8 << 10

// ToolResult is one tool_result Claude Code sent back: what the command
// the stand-in asked for printed (Claude Code's Bash tool joins stdout and
// stderr), and whether it reported an error.
type ToolResult struct {
	ToolUseID string `json:"toolUseId"`
	Command   string `json:"command"` // the script's command it answers, "" if the ID is not one the conversation holds
	Text      string `json:"text"`
	IsError   bool   `json:"isError"`
}

// ReadAgentScript reads an agent script: one shell command per line; blank
// lines and lines starting with # are skipped.
func ReadAgentScript(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent script: %w", err)
	}
	var cmds []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("agent script %s holds no command; fix: write one shell command per line", path)
	}
	return cmds, nil
}

// messagesRequest is the part of an Anthropic Messages request body the
// agent reads.
type messagesRequest struct {
	MaxTokens int `json:"max_tokens"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"` // a string or an array of blocks
	} `json:"messages"`
	Tools []struct {
		Name        string `json:"name"`
		InputSchema struct {
			Properties map[string]struct {
				Type string `json:"type"`
			} `json:"properties"`
			Required []string `json:"required"`
		} `json:"input_schema"`
	} `json:"tools"`
}

// contentBlock is one block of a message's content.
type contentBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"` // tool_result: a string or text blocks
	IsError   bool            `json:"is_error"`
}

func blocks(content json.RawMessage) []contentBlock {
	var bs []contentBlock
	if json.Unmarshal(content, &bs) != nil {
		return nil // a plain string: no blocks
	}
	return bs
}

// toolResultText is a tool_result's content as text.
func toolResultText(content json.RawMessage) string {
	var s string
	if json.Unmarshal(content, &s) == nil {
		return s
	}
	var parts []string
	for _, b := range blocks(content) {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// agentTurn is the stand-in's next assistant turn: a tool_use of Bash
// (command set) or the final text.
type agentTurn struct{ command, description string }

// agentReply decides the answer to one conversation turn and records the
// tool results it carries in c.rec. ok is false for requests the script
// does not answer: availability probes (max_tokens 1), which get text.
func (s *Server) agentReply(c *call) (turn agentTurn, ok bool, err error) {
	var req messagesRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		return agentTurn{}, false, &apiError{http.StatusBadRequest, "ValidationException", "standin: agent script: the request body is not a Messages request: " + err.Error()}
	}
	if req.MaxTokens <= 1 {
		return agentTurn{}, false, nil
	}
	if err := checkBashTool(req); err != nil {
		return agentTurn{}, false, &apiError{http.StatusBadRequest, "ValidationException", "standin: agent script: " + err.Error()}
	}
	// Every tool_use the conversation holds, by ID, in order: the count is
	// how many commands of the script were asked for.
	asked := map[string]string{}
	var n int
	for _, m := range req.Messages {
		if m.Role != "assistant" {
			continue
		}
		for _, b := range blocks(m.Content) {
			if b.Type == "tool_use" {
				var in struct {
					Command string `json:"command"`
				}
				_ = json.Unmarshal(b.Input, &in)
				asked[b.ID] = in.Command
				n++
			}
		}
	}
	if last := req.Messages[len(req.Messages)-1]; last.Role == "user" {
		for _, b := range blocks(last.Content) {
			if b.Type != "tool_result" {
				continue
			}
			text := toolResultText(b.Content)
			if len(text) > maxToolResultText {
				text = text[:maxToolResultText] + "…(truncated)"
			}
			c.rec.ToolResults = append(c.rec.ToolResults, ToolResult{ToolUseID: b.ToolUseID, Command: asked[b.ToolUseID], Text: text, IsError: b.IsError})
		}
	}
	if n >= len(s.cfg.AgentScript) {
		return agentTurn{}, true, nil
	}
	c.rec.ToolUse = s.cfg.AgentScript[n]
	return agentTurn{command: s.cfg.AgentScript[n], description: fmt.Sprintf("Agent script step %d of %d", n+1, len(s.cfg.AgentScript))}, true, nil
}

// checkBashTool: the request offers Claude Code's Bash tool with the input
// the agent sends. A Claude Code that renamed it or changed its input
// would otherwise answer every scripted turn with an input error, and the
// commands would silently never run.
func checkBashTool(req messagesRequest) error {
	var names []string
	for _, t := range req.Tools {
		if t.Name != bashTool {
			names = append(names, t.Name)
			continue
		}
		props := t.InputSchema.Properties
		for _, p := range []string{"command", "description"} {
			if props[p].Type != "string" {
				return fmt.Errorf("the %s tool's input_schema has no string property %q (properties: %v); the stand-in's tool_use would not fit it", bashTool, p, slices.Sorted(maps.Keys(props)))
			}
		}
		for _, r := range t.InputSchema.Required {
			if r != "command" && r != "description" {
				return fmt.Errorf("the %s tool requires input %q, which the stand-in's tool_use does not send", bashTool, r)
			}
		}
		return nil
	}
	return fmt.Errorf("the request's tools array offers no %q tool (it offers %v); start Claude Code with its Bash tool enabled", bashTool, names)
}

// toolUseID is a tool_use block's ID in Anthropic's shape.
func toolUseID() string {
	return "toolu_bdrk_" + randomString(24, secretChars[:62])
}

// Message is one message of a turn as the log keeps it: its role and its
// text blocks (tool_result text included), without Claude Code's
// <system-reminder> blocks, cut at maxMessageText.
type Message struct {
	Role string `json:"role"`
	Text string `json:"text"`
}

// maxMessageText bounds the text of one message kept in the log.
const maxMessageText = 2 << 10

// workDirPrefixes start the line that names the session's directory:
// Claude Code 2.1's environment reminder, and the older system prompt's.
var workDirPrefixes = []string{"Primary working directory: ", "Working directory: "}

// conversation is a Messages request's messages as text, and the working
// directory its environment block names ("" if none does).
func conversation(body []byte) (msgs []Message, workDir string) {
	var req struct {
		System   json.RawMessage `json:"system"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if json.Unmarshal(body, &req) != nil {
		return nil, ""
	}
	findDir := func(text string) {
		for _, l := range strings.Split(text, "\n") {
			l = strings.TrimLeft(l, " -")
			for _, p := range workDirPrefixes {
				if d, ok := strings.CutPrefix(l, p); ok && workDir == "" {
					workDir = strings.TrimSpace(d)
				}
			}
		}
	}
	findDir(toolResultText(req.System))
	for _, m := range req.Messages {
		var parts []string
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			parts = append(parts, s)
		}
		for _, b := range blocks(m.Content) {
			switch {
			case b.Type == "text" && strings.HasPrefix(b.Text, "<system-reminder>"):
				findDir(b.Text)
			case b.Type == "text":
				parts = append(parts, b.Text)
			case b.Type == "tool_result":
				parts = append(parts, toolResultText(b.Content))
			}
		}
		text := strings.Join(parts, "\n")
		if len(text) > maxMessageText {
			text = text[:maxMessageText] + "…(truncated)"
		}
		msgs = append(msgs, Message{Role: m.Role, Text: text})
	}
	return msgs, workDir
}
