// Package matchlock runs untrusted code in disposable matchlock micro-VMs. It spawns
// `matchlock rpc` and speaks JSON-RPC 2.0 over its stdio (spec/rpc.md). Standard library only.
//
//	c, err := matchlock.NewClient(matchlock.Options{})
//	defer c.Close()
//	sb, err := c.Create(ctx, matchlock.SandboxOptions{Image: "build/rootfs-busybox", MemoryMB: 256})
//	res, err := sb.Exec(ctx, matchlock.Shell("echo hello"))
package matchlock

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// FileChunk is the number of raw bytes per write_file/read_file request: the server's request
// lines are limited to 16 MiB and 4 MiB is about 5.6 MB of base64.
const FileChunk = 4 << 20

// cancelGrace bounds the wait for the server's answer after a cancel.
const cancelGrace = 30 * time.Second

// Command is what to run: Shell("...") runs through sh -c, Argv{...} runs with no shell.
type Command interface{ rpcValue() any }

// Shell is a command line run through sh -c.
type Shell string

// Argv is an argument vector run directly, with no shell.
type Argv []string

func (s Shell) rpcValue() any { return string(s) }
func (a Argv) rpcValue() any  { return []string(a) }

// ExecOption adjusts one command run.
type ExecOption func(map[string]any)

// WorkingDir runs the command in dir.
func WorkingDir(dir string) ExecOption { return func(p map[string]any) { p["working_dir"] = dir } }

// User runs the command as user (name or uid[:gid]).
func User(user string) ExecOption { return func(p map[string]any) { p["user"] = user } }

// Env sets an environment variable for this command.
func Env(name, value string) ExecOption {
	return func(p map[string]any) {
		env, _ := p["env"].(map[string]string)
		if env == nil {
			env = map[string]string{}
			p["env"] = env
		}
		env[name] = value
	}
}

// ExecResult is the outcome of a command.
type ExecResult struct {
	ExitCode   int
	Stdout     []byte
	Stderr     []byte
	DurationMS int64
	// Truncated is set when the server kept only the first 16 MiB of stdout or stderr (Exec).
	Truncated       bool
	StdoutTruncated bool
	StderrTruncated bool
}

// FileInfo is one entry of ListFiles. Name is UTF-8 (bytes that are not UTF-8 appear as
// U+FFFD); NameBytes holds the name's exact bytes.
type FileInfo struct {
	Name      string `json:"name"`
	NameBytes []byte `json:"name_b64"`
	Size      int64  `json:"size"`
	Mode      uint32 `json:"mode"`
	ModTime   string `json:"mod_time"`
	IsDir     bool   `json:"is_dir"`
}

// PortBinding is one forwarded port.
type PortBinding struct {
	Address    string `json:"address"`
	LocalPort  int    `json:"local_port"`
	RemotePort int    `json:"remote_port"`
}

// Options configure NewClient.
type Options struct {
	// Binary is the matchlock executable; default $MATCHLOCK_BIN, else matchlock on PATH.
	Binary string
	// Stderr, when set, receives the server's log lines.
	Stderr io.Writer
}

type response struct {
	result json.RawMessage
	err    error
}

type call struct {
	id     int64
	method string
	notify func(method string, params json.RawMessage) // runs on the reader goroutine
	resp   chan response
}

// Client is a connection to one `matchlock rpc` process, which serves up to 16 sandboxes at
// once: Create (or Launch) returns a SandboxHandle per sandbox. Its methods are safe for
// concurrent use; requests overlap on the wire, and one sandbox's slow request never holds up
// another's. For a client of one sandbox, the handle's methods are also on the client.
type Client struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	wmu   sync.Mutex

	mu      sync.Mutex
	pending map[int64]*call
	nextID  int64
	dead    error
	done    chan struct{}
	tail    []string

	sandboxes []*SandboxHandle // open, oldest first; guarded by mu
}

// NewClient spawns `matchlock rpc`.
func NewClient(opts Options) (*Client, error) {
	bin := opts.Binary
	if bin == "" {
		bin = os.Getenv("MATCHLOCK_BIN")
	}
	if bin == "" {
		p, err := exec.LookPath("matchlock")
		if err != nil {
			return nil, fmt.Errorf("cannot find the matchlock binary: put it on PATH or set MATCHLOCK_BIN")
		}
		bin = p
	}
	c := &Client{pending: map[int64]*call{}, done: make(chan struct{})}
	c.cmd = exec.Command(bin, "rpc")
	stdin, err := c.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s rpc: %w", bin, err)
	}
	c.stdin = stdin
	errDone := make(chan struct{})
	go c.readStderr(stderr, opts.Stderr, errDone)
	go c.readLoop(stdout, errDone)
	return c, nil
}

func (c *Client) readStderr(r io.Reader, sink io.Writer, done chan struct{}) {
	defer close(done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		c.mu.Lock()
		c.tail = append(c.tail, line)
		if len(c.tail) > 5 {
			c.tail = c.tail[len(c.tail)-5:]
		}
		c.mu.Unlock()
		if sink != nil {
			fmt.Fprintln(sink, line)
		}
	}
}

type wireMsg struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *RPCError       `json:"error"`
}

func (c *Client) readLoop(r io.Reader, errDone chan struct{}) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			c.dispatch(line)
		}
		if err != nil {
			break
		}
	}
	// The server is gone: fail everything still waiting.
	werr := c.cmd.Wait()
	select {
	case <-errDone:
	case <-time.After(time.Second):
	}
	why := "matchlock rpc exited"
	if werr != nil {
		why += " (" + werr.Error() + ")"
	}
	c.mu.Lock()
	if len(c.tail) > 0 {
		why += ": " + strings.Join(c.tail, " | ")
	}
	c.dead = fmt.Errorf("%w: %s", ErrClosed, why)
	calls := c.pending
	c.pending = map[int64]*call{}
	c.mu.Unlock()
	for _, cl := range calls {
		cl.resp <- response{err: fmt.Errorf("%s: %w", cl.method, c.dead)}
	}
	close(c.done)
}

func (c *Client) dispatch(line []byte) {
	var m wireMsg
	if json.Unmarshal(line, &m) != nil {
		return // stdout carries only protocol; ignore anything else
	}
	if m.Method != "" && c.serverMessage(&m) { // hooks.go: hook questions, events
		return
	}
	if m.Method == "event" {
		ev := Event{Raw: append(json.RawMessage{}, m.Params...)}
		if json.Unmarshal(m.Params, &ev) == nil {
			c.routeEvent(ev)
		}
		return
	}
	if m.Method != "" {
		var p struct {
			ID int64 `json:"id"`
		}
		if json.Unmarshal(m.Params, &p) != nil {
			return
		}
		c.mu.Lock()
		cl := c.pending[p.ID]
		c.mu.Unlock()
		if cl != nil && cl.notify != nil {
			cl.notify(m.Method, m.Params)
		}
		return
	}
	var id int64
	if json.Unmarshal(m.ID, &id) != nil {
		return
	}
	c.mu.Lock()
	cl := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if cl == nil {
		return
	}
	if m.Error != nil {
		m.Error.Method = cl.method
		cl.resp <- response{err: m.Error}
		return
	}
	cl.resp <- response{result: m.Result}
}

func (c *Client) write(msg map[string]any) error {
	msg["jsonrpc"] = "2.0"
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.stdin.Write(b); err != nil {
		c.mu.Lock()
		dead := c.dead
		c.mu.Unlock()
		if dead != nil {
			return dead
		}
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	return nil
}

func (c *Client) start(method string, params any, notify func(string, json.RawMessage)) (*call, error) {
	c.mu.Lock()
	if c.dead != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", method, c.dead)
	}
	c.nextID++
	cl := &call{id: c.nextID, method: method, notify: notify, resp: make(chan response, 1)}
	c.pending[cl.id] = cl
	c.mu.Unlock()
	if params == nil {
		params = map[string]any{}
	}
	if err := c.write(map[string]any{"id": cl.id, "method": method, "params": params}); err != nil {
		c.mu.Lock()
		delete(c.pending, cl.id)
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	return cl, nil
}

// wait returns the answer to cl. If ctx ends first, the request is cancelled on the server and
// its answer (an RPCError with CodeCancelled wrapping ctx.Err()) is returned.
func (c *Client) wait(ctx context.Context, cl *call) (json.RawMessage, error) {
	select {
	case r := <-cl.resp:
		return r.result, r.err
	case <-ctx.Done():
	}
	go c.sendCancel(cl.id)
	select {
	case r := <-cl.resp:
		var re *RPCError
		if asRPC(r.err, &re) && re.Code == CodeCancelled {
			re.cause = ctx.Err()
		} else if r.err == nil {
			return r.result, nil // it finished before the cancel landed
		}
		return r.result, r.err
	case <-time.After(cancelGrace):
		c.mu.Lock()
		delete(c.pending, cl.id)
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: no answer after cancel: %w", cl.method, ctx.Err())
	}
}

func asRPC(err error, re **RPCError) bool {
	e, ok := err.(*RPCError)
	if ok {
		*re = e
	}
	return ok
}

func (c *Client) sendCancel(id int64) {
	cl, err := c.start("cancel", map[string]any{"id": id}, nil)
	if err != nil {
		return
	}
	select {
	case <-cl.resp:
	case <-time.After(cancelGrace):
	}
}

// Call sends one raw JSON-RPC request and decodes its result into result (may be nil).
func (c *Client) Call(ctx context.Context, method string, params any, result any) error {
	cl, err := c.start(method, params, nil)
	if err != nil {
		return err
	}
	raw, err := c.wait(ctx, cl)
	if err != nil {
		return err
	}
	if result != nil && len(raw) > 0 {
		return json.Unmarshal(raw, result)
	}
	return nil
}

// Cancel asks the server to cancel a running request; it reports whether one was running.
func (c *Client) Cancel(ctx context.Context, requestID int64) (bool, error) {
	var res struct {
		Cancelled bool `json:"cancelled"`
	}
	err := c.Call(ctx, "cancel", map[string]any{"id": requestID}, &res)
	return res.Cancelled, err
}

// Create creates and starts a sandbox and returns its handle once it runs. When ctx ends first
// the start is abandoned (nothing is left behind) and an RPCError with CodeCancelled is
// returned.
func (c *Client) Create(ctx context.Context, opts SandboxOptions) (*SandboxHandle, error) {
	return c.create(ctx, opts.CreateParams(), opts.PortForwards)
}

// Launch is Create with the options of a Sandbox builder.
func (c *Client) Launch(ctx context.Context, sb *Sandbox) (*SandboxHandle, error) {
	return c.create(ctx, sb.CreateParams(), sb.PortForwards())
}

func (c *Client) create(ctx context.Context, params map[string]any, forwards []PortForward) (*SandboxHandle, error) {
	var res struct {
		ID string `json:"id"`
	}
	if err := c.Call(ctx, "create", params, &res); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		// Started before the cancel could abandon it: the server stops it (spec/rpc.md, cancel).
		_ = c.Call(context.Background(), "close", map[string]any{"sandbox": res.ID}, nil)
		return nil, &RPCError{Code: CodeCancelled, Message: "cancelled", Method: "create", cause: ctx.Err()}
	}
	h := newHandle(c, res.ID)
	c.mu.Lock()
	c.sandboxes = append(c.sandboxes, h)
	c.mu.Unlock()
	for _, f := range forwards {
		if _, err := h.PortForward(ctx, f.LocalPort, f.RemotePort); err != nil {
			_ = h.Close(context.Background())
			return nil, err
		}
	}
	return h, nil
}

// Handle returns the handle of a sandbox this server holds, by id: one this client made, or one
// made with a raw Call("create", ...) (which this client then tracks and closes).
func (c *Client) Handle(id string) *SandboxHandle {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.sandboxes {
		if h.id == id {
			return h
		}
	}
	h := newHandle(c, id)
	c.sandboxes = append(c.sandboxes, h)
	return h
}

// Sandboxes returns the sandboxes this client created that are not closed, oldest first.
func (c *Client) Sandboxes() []*SandboxHandle {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*SandboxHandle{}, c.sandboxes...)
}

func (c *Client) forget(h *SandboxHandle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.sandboxes {
		if s == h {
			c.sandboxes = append(c.sandboxes[:i], c.sandboxes[i+1:]...)
			return
		}
	}
}

// routeEvent gives an event to its sandbox's handle; "dropped" names no sandbox, so every
// handle hears of it.
func (c *Client) routeEvent(ev Event) {
	for _, h := range c.Sandboxes() {
		if ev.Sandbox == "" || ev.Sandbox == h.id {
			h.pushEvent(ev)
		}
	}
}

// only is the client's one sandbox, for the client-level methods of clients of one sandbox.
// Holding none or several, it is a handle that names no sandbox, so the server answers as
// spec/rpc.md says (no sandbox: CodeSandboxFailed; several: CodeInvalidParams, "say which").
func (c *Client) only() (*SandboxHandle, error) {
	if hs := c.Sandboxes(); len(hs) == 1 {
		return hs[0], nil
	}
	return newHandle(c, ""), nil
}

// SandboxID is the id of the client's only sandbox, or "" (none, or several).
func (c *Client) SandboxID() string {
	h, _ := c.only()
	return h.id
}

// Exec runs a command in the client's only sandbox (see SandboxHandle.Exec).
func (c *Client) Exec(ctx context.Context, cmd Command, opts ...ExecOption) (*ExecResult, error) {
	h, err := c.only()
	if err != nil {
		return nil, err
	}
	return h.Exec(ctx, cmd, opts...)
}

// ExecStream runs a command in the client's only sandbox (see SandboxHandle.ExecStream).
func (c *Client) ExecStream(ctx context.Context, cmd Command, stdout, stderr io.Writer, opts ...ExecOption) (*ExecResult, error) {
	h, err := c.only()
	if err != nil {
		return nil, err
	}
	return h.ExecStream(ctx, cmd, stdout, stderr, opts...)
}

// ExecPipe starts a command in the client's only sandbox (see SandboxHandle.ExecPipe).
func (c *Client) ExecPipe(ctx context.Context, cmd Command, stdout, stderr io.Writer, opts ...ExecOption) (*Process, error) {
	h, err := c.only()
	if err != nil {
		return nil, err
	}
	return h.ExecPipe(ctx, cmd, stdout, stderr, opts...)
}

// ExecInteractive runs a command on a terminal in the client's only sandbox.
func (c *Client) ExecInteractive(ctx context.Context, cmd Command, stdin io.Reader, stdout io.Writer, rows, cols int, opts ...ExecOption) (int, error) {
	h, err := c.only()
	if err != nil {
		return -1, err
	}
	return h.ExecInteractive(ctx, cmd, stdin, stdout, rows, cols, opts...)
}

// WriteFile writes a file in the client's only sandbox (see Files.Write).
func (c *Client) WriteFile(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	h, err := c.only()
	if err != nil {
		return err
	}
	return h.Files.Write(ctx, path, data, mode)
}

// ReadFile reads a file of the client's only sandbox (see Files.Read).
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	return c.ReadFileLimit(ctx, path, ReadFileMax)
}

// ReadFileLimit reads a file of the client's only sandbox (see Files.ReadLimit).
func (c *Client) ReadFileLimit(ctx context.Context, path string, max int) ([]byte, error) {
	h, err := c.only()
	if err != nil {
		return nil, err
	}
	return h.Files.ReadLimit(ctx, path, max)
}

// ListFiles lists a directory of the client's only sandbox (see Files.List).
func (c *Client) ListFiles(ctx context.Context, path string) ([]FileInfo, error) {
	h, err := c.only()
	if err != nil {
		return nil, err
	}
	return h.Files.List(ctx, path)
}

// PortForward forwards a host port to the client's only sandbox.
func (c *Client) PortForward(ctx context.Context, localPort, remotePort int, addresses ...string) ([]PortBinding, error) {
	h, err := c.only()
	if err != nil {
		return nil, err
	}
	return h.PortForward(ctx, localPort, remotePort, addresses...)
}

// AllowListAdd edits the allow-list of the client's only sandbox.
func (c *Client) AllowListAdd(ctx context.Context, hosts ...string) ([]string, error) {
	h, err := c.only()
	if err != nil {
		return nil, err
	}
	return h.AllowListAdd(ctx, hosts...)
}

// AllowListDelete edits the allow-list of the client's only sandbox.
func (c *Client) AllowListDelete(ctx context.Context, hosts ...string) ([]string, error) {
	h, err := c.only()
	if err != nil {
		return nil, err
	}
	return h.AllowListDelete(ctx, hosts...)
}

// Log returns the log of the client's only sandbox.
func (c *Client) Log(ctx context.Context) (string, error) {
	h, err := c.only()
	if err != nil {
		return "", err
	}
	return h.Log(ctx)
}

// Remove stops the client's only sandbox and removes its record (see SandboxHandle.Remove).
// With no sandbox it does nothing.
func (c *Client) Remove(ctx context.Context) error {
	if len(c.Sandboxes()) == 0 {
		return nil
	}
	h, err := c.only()
	if err != nil {
		return err
	}
	return h.Remove(ctx)
}

// Close stops every sandbox still open (at once) and ends `matchlock rpc`. The sandboxes stay
// listed as stopped (with their logs) until `matchlock rm ID`, `matchlock prune` or Remove.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	defer installed.Delete(c) // hooks.go
	c.mu.Lock()
	dead := c.dead
	c.mu.Unlock()
	var first error
	if dead == nil {
		var wg sync.WaitGroup
		var emu sync.Mutex
		for _, h := range c.Sandboxes() {
			wg.Add(1)
			go func(h *SandboxHandle) {
				defer wg.Done()
				if err := h.Close(ctx); err != nil {
					emu.Lock()
					if first == nil {
						first = err
					}
					emu.Unlock()
				}
			}(h)
		}
		wg.Wait()
	}
	c.wmu.Lock()
	_ = c.stdin.Close()
	c.wmu.Unlock()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	return first
}
