package sdk

// Hooks: rules and callbacks on a sandbox's HTTPS requests and host-folder file operations
// (spec/rpc.md "Hooks"). Rules are evaluated by matchlock (in the TLS proxy and the file
// service); a rule with a Callback (a file rule with Rewrite) makes the server ask this client
// over the same connection and wait at most CallbackTimeoutMS for the answer. No answer in time,
// an error from the callback, or a client that went away: the request is refused (403) or the
// file operation fails (EACCES).
//
//	h := &sdk.Hooks{
//		Network: []sdk.NetworkRule{{Name: "no-admin", Path: "/admin/**", Action: "block"},
//			{Name: "tag", Path: "/v1/*", Callback: func(ctx context.Context, rq sdk.NetworkRequest) (sdk.NetworkDecision, error) {
//				return sdk.Allow(map[string]string{"x-tag": "1"}), nil
//			}}},
//		Files: []sdk.FileRule{{Name: "locked", Ops: []string{"write", "create"}, Path: "/workspace/ro/**", Action: "block"}},
//	}
//	id, err := c.LaunchWithHooks(ctx, sdk.New(image).WithMount(dir, "/workspace", "rw"), h)
//	...
//	_, err = c.SetHooks(ctx, h) // change them on the running sandbox
//
// Callbacks run on goroutines of their own (several at once); they may call the client.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// NetworkRequest is what a network callback is asked about: the request as the rules left it.
// Secret values never appear here: hooks run before the proxy puts them in.
type NetworkRequest struct {
	Sandbox string            `json:"sandbox"`
	Rule    string            `json:"rule"`
	Method  string            `json:"method"`
	Host    string            `json:"host"`
	Port    int               `json:"port"`
	Path    string            `json:"path"`    // with its query
	Headers map[string]string `json:"headers"` // names lower case
}

// NetworkDecision is a network callback's answer.
type NetworkDecision struct {
	Action        string            `json:"action"` // "allow" or "block"
	SetHeaders    map[string]string `json:"set_headers,omitempty"`
	DeleteHeaders []string          `json:"delete_headers,omitempty"`
}

// Allow lets the request go with these header edits (set may be nil).
func Allow(set map[string]string, del ...string) NetworkDecision {
	return NetworkDecision{Action: "allow", SetHeaders: set, DeleteHeaders: del}
}

// Block refuses the request (the guest gets 403).
func Block() NetworkDecision { return NetworkDecision{Action: "block"} }

// FileRequest is what a file callback is asked about (guest paths).
type FileRequest struct {
	Sandbox string
	Rule    string
	Op      string // read, write, create, mkdir, remove, rename, setattr
	Path    string
	Path2   string // a rename's target
	Offset  int64  // rewrite rules: where the write goes
	Data    []byte // rewrite rules: the bytes the guest writes
}

// NetworkRule is a rule on intercepted HTTPS requests. Action: "allow", "block", "callback" or ""
// (edits only); a Callback makes it a callback rule.
type NetworkRule struct {
	Name                  string
	Action                string
	Hosts, Methods        []string
	Path                  string
	SetHeaders            map[string]string
	DeleteHeaders         []string
	SetQuery              map[string]string
	DeleteQuery           []string
	RewritePath           string
	SetResponseHeaders    map[string]string
	DeleteResponseHeaders []string
	Callback              func(ctx context.Context, rq NetworkRequest) (NetworkDecision, error)
}

// FileRule is a rule on file operations in host folders mounted rw. Phase "before" (default):
// Action "allow"/"block", or a Callback (true: allow), or a Rewrite returning the bytes each
// write writes instead (nil: as they are); phase "after": a file event once done.
type FileRule struct {
	Name     string
	Ops      []string
	Path     string
	Phase    string
	Action   string
	Callback func(ctx context.Context, rq FileRequest) (bool, error)
	Rewrite  func(ctx context.Context, rq FileRequest) ([]byte, error)
}

// Hooks is a sandbox's rules and what this client does when asked or told about them. OnEvent
// (optional) gets every event notification's params (network and file events) on the client's
// reader goroutine: keep it short.
type Hooks struct {
	Network           []NetworkRule
	Files             []FileRule
	CallbackTimeoutMS int
	OnEvent           func(params json.RawMessage)
}

func (h *Hooks) name() {
	for i := range h.Network {
		if h.Network[i].Callback != nil && h.Network[i].Name == "" {
			h.Network[i].Name = fmt.Sprintf("go-network-%d", i)
		}
	}
	for i := range h.Files {
		f := &h.Files[i]
		if (f.Callback != nil || f.Rewrite != nil) && f.Name == "" {
			f.Name = fmt.Sprintf("go-file-%d", i)
		}
	}
}

// Wire is the document create's "hooks" param and hooks_set take.
func (h *Hooks) Wire() map[string]any {
	h.name()
	net := []map[string]any{}
	for _, r := range h.Network {
		o := map[string]any{}
		put := func(k string, v any, ok bool) {
			if ok {
				o[k] = v
			}
		}
		action := r.Action
		if r.Callback != nil {
			action = "callback"
		}
		put("name", r.Name, r.Name != "")
		put("action", action, action != "")
		put("hosts", r.Hosts, len(r.Hosts) > 0)
		put("methods", r.Methods, len(r.Methods) > 0)
		put("path", r.Path, r.Path != "")
		put("set_headers", r.SetHeaders, len(r.SetHeaders) > 0)
		put("delete_headers", r.DeleteHeaders, len(r.DeleteHeaders) > 0)
		put("set_query", r.SetQuery, len(r.SetQuery) > 0)
		put("delete_query", r.DeleteQuery, len(r.DeleteQuery) > 0)
		put("rewrite_path", r.RewritePath, r.RewritePath != "")
		put("set_response_headers", r.SetResponseHeaders, len(r.SetResponseHeaders) > 0)
		put("delete_response_headers", r.DeleteResponseHeaders, len(r.DeleteResponseHeaders) > 0)
		net = append(net, o)
	}
	files := []map[string]any{}
	for _, f := range h.Files {
		o := map[string]any{}
		if f.Name != "" {
			o["name"] = f.Name
		}
		if f.Phase != "" {
			o["phase"] = f.Phase
		}
		if len(f.Ops) > 0 {
			o["ops"] = f.Ops
		}
		if f.Path != "" {
			o["path"] = f.Path
		}
		action := f.Action
		if f.Rewrite != nil {
			action = "rewrite"
		} else if f.Callback != nil {
			action = "callback"
		}
		if action != "" {
			o["action"] = action
		}
		files = append(files, o)
	}
	out := map[string]any{"network": net, "files": files}
	if h.CallbackTimeoutMS > 0 {
		out["callback_timeout_ms"] = h.CallbackTimeoutMS
	}
	return out
}

type question struct {
	Sandbox   string            `json:"sandbox"`
	Kind      string            `json:"kind"`
	Rule      string            `json:"rule"`
	Method    string            `json:"method"`
	Host      string            `json:"host"`
	Port      int               `json:"port"`
	Path      string            `json:"path"`
	Path2     string            `json:"path2"`
	Headers   map[string]string `json:"headers"`
	Op        string            `json:"op"`
	Offset    int64             `json:"offset"`
	Data      *string           `json:"data"`
	TimeoutMS int               `json:"timeout_ms"`
}

// answer is the result for one question from the server (an error: it is refused).
func (h *Hooks) answer(q question) (any, error) {
	wait := time.Duration(q.TimeoutMS) * time.Millisecond
	if wait <= 0 {
		wait = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	switch q.Kind {
	case "network":
		for _, r := range h.Network {
			if r.Name == q.Rule && r.Callback != nil {
				d, err := r.Callback(ctx, NetworkRequest{q.Sandbox, q.Rule, q.Method, q.Host, q.Port, q.Path, q.Headers})
				if err != nil {
					return nil, err
				}
				if d.Action == "" {
					d.Action = "allow"
				}
				return d, nil
			}
		}
	case "file":
		for _, f := range h.Files {
			if f.Name != q.Rule || (f.Callback == nil && f.Rewrite == nil) {
				continue
			}
			rq := FileRequest{Sandbox: q.Sandbox, Rule: q.Rule, Op: q.Op, Path: q.Path, Path2: q.Path2, Offset: q.Offset}
			if q.Data != nil {
				b, err := base64.StdEncoding.DecodeString(*q.Data)
				if err != nil {
					return nil, err
				}
				rq.Data = b
			}
			if f.Rewrite != nil {
				b, err := f.Rewrite(ctx, rq)
				if err != nil {
					return nil, err
				}
				out := map[string]any{"action": "allow"}
				if b != nil {
					out["data"] = base64.StdEncoding.EncodeToString(b)
				}
				return out, nil
			}
			ok, err := f.Callback(ctx, rq)
			if err != nil {
				return nil, err
			}
			if !ok {
				return map[string]any{"action": "block"}, nil
			}
			return map[string]any{"action": "allow"}, nil
		}
	}
	return nil, fmt.Errorf("no %s callback for rule %q", q.Kind, q.Rule)
}

// The hooks installed on each client.
var installed sync.Map // *Client -> *Hooks

// InstallHooks makes this client answer the server's questions with h's callbacks.
func (c *Client) InstallHooks(h *Hooks) {
	h.name()
	installed.Store(c, h)
}

// serverMessage handles a message from the server with a method: a hook question (it has an
// id; answered on a goroutine) or an event (told to OnEvent). Returns true when nothing else
// should look at it.
func (c *Client) serverMessage(m *wireMsg) bool {
	v, _ := installed.Load(c)
	h, _ := v.(*Hooks)
	if m.Method == "event" {
		if h != nil && h.OnEvent != nil {
			h.OnEvent(append(json.RawMessage{}, m.Params...))
		}
		return false
	}
	if m.Method != "hook" || len(m.ID) == 0 {
		return false
	}
	id := append(json.RawMessage{}, m.ID...)
	var q question
	perr := json.Unmarshal(m.Params, &q)
	go func() {
		var res any
		err := perr
		if err == nil && h == nil {
			err = fmt.Errorf("this client has no hooks installed")
		}
		if err == nil {
			res, err = h.answer(q)
		}
		if err != nil {
			_ = c.write(map[string]any{"id": id, "error": map[string]any{"code": -32603, "message": "hook callback failed: " + err.Error()}})
			return
		}
		_ = c.write(map[string]any{"id": id, "result": res})
	}()
	return true
}

// SetHooks replaces the running sandbox's rules (and this client's callbacks) and returns what
// is in force.
func (c *Client) SetHooks(ctx context.Context, h *Hooks) (map[string]any, error) {
	c.InstallHooks(h)
	var res map[string]any
	err := c.Call(ctx, "hooks_set", map[string]any{"hooks": h.Wire()}, &res)
	return res, err
}

// GetHooks returns the rules in force on the running sandbox.
func (c *Client) GetHooks(ctx context.Context) (map[string]any, error) {
	var res map[string]any
	err := c.Call(ctx, "hooks_get", map[string]any{}, &res)
	return res, err
}

// LaunchWithHooks creates and boots sb with h in force from its first instruction.
func (c *Client) LaunchWithHooks(ctx context.Context, sb *Sandbox, h *Hooks) (string, error) {
	if id := c.SandboxID(); id != "" {
		return "", fmt.Errorf("launch: this client already has sandbox %s", id)
	}
	c.InstallHooks(h)
	p := sb.CreateParams()
	p["hooks"] = h.Wire()
	var res struct {
		ID string `json:"id"`
	}
	if err := c.Call(ctx, "create", p, &res); err != nil {
		return "", err
	}
	c.mu.Lock()
	c.sandboxID = res.ID
	c.mu.Unlock()
	return res.ID, nil
}
