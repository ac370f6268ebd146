package awsstandin

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/ccboot/ccboot/packaging/cfn"
)

// engine is one long-lived `node harness.mjs --serve`: the real IAM engine
// (@cloud-copilot/iam-simulate) answering one JSON line per request, as
// packaging/iam_test.go uses it in one-shot mode.
type engine struct {
	mu     sync.Mutex // one line in flight: answers come in order
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *lockedBuffer
	sent   map[string]bool // policy refs node already has
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startEngine(harnessDir string) (*engine, error) {
	if _, err := os.Stat(filepath.Join(harnessDir, "node_modules", "@cloud-copilot", "iam-simulate", "package.json")); err != nil {
		return nil, fmt.Errorf("the IAM test tools are not installed in %s: run `make deps` (npm ci in packaging/iam)", harnessDir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("node not found: run `make deps`")
	}
	cmd := exec.Command(node, "harness.mjs", "--serve")
	cmd.Dir = harnessDir
	e := &engine{cmd: cmd, stderr: &lockedBuffer{}, sent: map[string]bool{}}
	cmd.Stderr = e.stderr
	if e.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	e.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node harness.mjs --serve: %w", err)
	}
	return e, nil
}

func (e *engine) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.in.Close()
	if err := e.cmd.Wait(); err != nil {
		return fmt.Errorf("node harness.mjs --serve: %v: %s", err, e.stderr.String())
	}
	return nil
}

// simulation is one request to decide: principal does action on resource.
type simulation struct {
	Principal    string // the request's principal (an assumed-role ARN)
	PrincipalArn string // aws:PrincipalArn: the role's ARN
	Account      string
	Action       string
	Resource     string
	Identity     []cfn.NamedPolicy
	Trust        any            // the resource policy (a role's trust policy), or nil
	Unvalidated  bool           // the engine's request validation refuses the ARN although AWS takes it
	Context      map[string]any // further request context (aws:CalledViaLast...)
}

func policyRef(doc any) (string, []byte, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), b, nil
}

// decide evaluates sims in one line and returns each one's decision:
// Allowed, ExplicitlyDenied or ImplicitlyDenied.
func (e *engine) decide(account string, sims []simulation) ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	policies := map[string]json.RawMessage{}
	newRefs := []string{}
	ref := func(doc any) (string, error) {
		r, b, err := policyRef(doc)
		if err != nil {
			return "", err
		}
		if !e.sent[r] {
			policies[r] = b
			newRefs = append(newRefs, r)
		}
		return r, nil
	}
	type simCase struct {
		ID         string         `json:"id"`
		Simulation map[string]any `json:"simulation"`
	}
	var cases []simCase
	for i, s := range sims {
		ids := []map[string]string{}
		for _, p := range s.Identity {
			r, err := ref(p.Policy)
			if err != nil {
				return nil, err
			}
			ids = append(ids, map[string]string{"name": p.Name, "ref": r})
		}
		ctx := map[string]any{}
		if s.PrincipalArn != "" {
			// The engine does not derive these from the principal.
			ctx["aws:PrincipalArn"] = s.PrincipalArn
			ctx["aws:PrincipalAccount"] = s.Account
		}
		for k, v := range s.Context {
			ctx[k] = v
		}
		sim := map[string]any{
			"request": map[string]any{
				"principal": s.Principal, "action": s.Action, "contextVariables": ctx,
				// AWS-owned resources (foundation models, "*") have no
				// account; the engine would take them as cross-account, so
				// they are put in the stack's: identity policies alone decide.
				"resource": map[string]any{"resource": s.Resource, "accountId": account},
			},
			"identityPolicies": ids, "serviceControlPolicies": []any{}, "resourceControlPolicies": []any{},
		}
		if s.Trust != nil {
			r, err := ref(s.Trust)
			if err != nil {
				return nil, err
			}
			sim["resourcePolicyRef"] = r
		}
		if s.Unvalidated {
			sim["unvalidated"] = true
		}
		cases = append(cases, simCase{ID: fmt.Sprint(i), Simulation: sim})
	}
	line, err := json.Marshal(map[string]any{"policies": policies, "simulations": cases})
	if err != nil {
		return nil, err
	}
	if _, err := e.in.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("IAM engine (node harness.mjs --serve) gone: %v: %s", err, e.stderr.String())
	}
	out, err := e.out.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("IAM engine (node harness.mjs --serve) gone: %v: %s", err, e.stderr.String())
	}
	var ans struct {
		Error       string `json:"error"`
		Simulations map[string]struct {
			Result string `json:"result"`
			Error  string `json:"error"`
		} `json:"simulations"`
	}
	if err := json.Unmarshal(out, &ans); err != nil {
		return nil, fmt.Errorf("IAM engine answered %q: %v", out, err)
	}
	if ans.Error != "" {
		return nil, fmt.Errorf("IAM engine: %s", ans.Error)
	}
	for _, r := range newRefs {
		e.sent[r] = true
	}
	results := make([]string, len(sims))
	for i := range sims {
		a, ok := ans.Simulations[fmt.Sprint(i)]
		switch {
		case !ok:
			return nil, fmt.Errorf("IAM engine gave no answer for %s on %s", sims[i].Action, sims[i].Resource)
		case a.Error != "":
			return nil, fmt.Errorf("IAM engine refused %s on %s: %s", sims[i].Action, sims[i].Resource, a.Error)
		}
		results[i] = a.Result
	}
	return results, nil
}
