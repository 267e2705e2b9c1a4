// Package sdk runs untrusted code in disposable matchlock micro-VMs. It spawns `matchlock rpc`
// and speaks JSON-RPC 2.0 over its stdio (spec/rpc.md). Standard library only.
//
//	c, err := sdk.NewClient(sdk.Options{})
//	defer c.Close()
//	id, err := c.Launch(ctx, sdk.New("build/rootfs-busybox"))
//	res, err := c.Exec(ctx, sdk.Shell("echo hello"))
package sdk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
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

// Client is a connection to one `matchlock rpc` process; it holds one sandbox at a time. Its
// methods are safe for concurrent use; requests overlap on the wire.
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

	sandboxID string
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

// SandboxID is the id of the running sandbox, or "".
func (c *Client) SandboxID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sandboxID
}

// Launch creates and boots the sandbox and returns its id. One sandbox per client at a time.
func (c *Client) Launch(ctx context.Context, sb *Sandbox) (string, error) {
	if id := c.SandboxID(); id != "" {
		// The server holds several, but this client's calls name none: they would be ambiguous.
		return "", fmt.Errorf("launch: this client already has sandbox %s: close or remove it first, or use another client", id)
	}
	var res struct {
		ID string `json:"id"`
	}
	if err := c.Call(ctx, "create", sb.CreateParams(), &res); err != nil {
		return "", err
	}
	c.mu.Lock()
	c.sandboxID = res.ID
	c.mu.Unlock()
	for _, f := range sb.PortForwards() {
		if _, err := c.PortForward(ctx, f.LocalPort, f.RemotePort); err != nil {
			_ = c.Remove(context.Background())
			return "", err
		}
	}
	return res.ID, nil
}

func execParams(cmd Command, opts []ExecOption) map[string]any {
	p := map[string]any{"command": cmd.rpcValue()}
	for _, o := range opts {
		o(p)
	}
	return p
}

func unb64(s string) []byte {
	b, _ := base64.StdEncoding.DecodeString(s)
	return b
}

// Exec runs a command to completion and returns its exit code and output. When ctx ends the
// command is cancelled (SIGTERM, then SIGKILL) and an RPCError with CodeCancelled is returned.
func (c *Client) Exec(ctx context.Context, cmd Command, opts ...ExecOption) (*ExecResult, error) {
	var res struct {
		ExitCode   int    `json:"exit_code"`
		Stdout     string `json:"stdout"`
		Stderr     string `json:"stderr"`
		DurationMS int64  `json:"duration_ms"`
		Truncated  bool   `json:"truncated"`
		StdoutTr   bool   `json:"stdout_truncated"`
		StderrTr   bool   `json:"stderr_truncated"`
	}
	if err := c.Call(ctx, "exec", execParams(cmd, opts), &res); err != nil {
		return nil, err
	}
	return &ExecResult{ExitCode: res.ExitCode, Stdout: unb64(res.Stdout), Stderr: unb64(res.Stderr),
		DurationMS: res.DurationMS, Truncated: res.Truncated, StdoutTruncated: res.StdoutTr,
		StderrTruncated: res.StderrTr}, nil
}

type dataParams struct {
	Data string `json:"data"`
}

type finalResult struct {
	ExitCode   int   `json:"exit_code"`
	DurationMS int64 `json:"duration_ms"`
}

// ExecStream runs a command, writing its output to stdout and stderr (either may be nil) as it
// arrives. The writers are called from the client's reader goroutine and must not call this
// client. The result's Stdout and Stderr are empty.
func (c *Client) ExecStream(ctx context.Context, cmd Command, stdout, stderr io.Writer, opts ...ExecOption) (*ExecResult, error) {
	cl, err := c.start("exec_stream", execParams(cmd, opts), outputNotifier(stdout, stderr, nil))
	if err != nil {
		return nil, err
	}
	raw, err := c.wait(ctx, cl)
	if err != nil {
		return nil, err
	}
	var res finalResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, err
	}
	return &ExecResult{ExitCode: res.ExitCode, DurationMS: res.DurationMS}, nil
}

func outputNotifier(stdout, stderr io.Writer, ready chan struct{}) func(string, json.RawMessage) {
	return func(method string, params json.RawMessage) {
		if strings.HasSuffix(method, ".ready") {
			if ready != nil {
				close(ready)
			}
			return
		}
		w := stdout
		if strings.HasSuffix(method, ".stderr") {
			w = stderr
		} else if !strings.HasSuffix(method, ".stdout") {
			return
		}
		if w == nil {
			return
		}
		var p dataParams
		if json.Unmarshal(params, &p) == nil {
			_, _ = w.Write(unb64(p.Data))
		}
	}
}

// Process is a command started by ExecPipe: write to its stdin, then Wait.
type Process struct {
	c       *Client
	ctx     context.Context
	prefix  string
	cl      *call
	early   *response
	outBuf  *lockedBuffer
	errBuf  *lockedBuffer
	waitMu  sync.Mutex
	result  *ExecResult
	waitErr error
	waited  bool
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

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte{}, l.b.Bytes()...)
}

// ExecPipe starts a command with a stdin pipe. Output goes to stdout/stderr when given (called
// from the reader goroutine), else it is collected into Wait's result. When ctx ends the
// command is cancelled.
func (c *Client) ExecPipe(ctx context.Context, cmd Command, stdout, stderr io.Writer, opts ...ExecOption) (*Process, error) {
	return c.startProcess(ctx, "exec_pipe", execParams(cmd, opts), stdout, stderr)
}

func (c *Client) startProcess(ctx context.Context, method string, params map[string]any, stdout, stderr io.Writer) (*Process, error) {
	p := &Process{c: c, ctx: ctx, prefix: method}
	if stdout == nil {
		p.outBuf = &lockedBuffer{}
		stdout = p.outBuf
	}
	if stderr == nil {
		p.errBuf = &lockedBuffer{}
		stderr = p.errBuf
	}
	ready := make(chan struct{})
	cl, err := c.start(method, params, outputNotifier(stdout, stderr, ready))
	if err != nil {
		return nil, err
	}
	p.cl = cl
	select {
	case <-ready:
	case r := <-cl.resp:
		if r.err != nil {
			return nil, r.err
		}
		p.early = &r
	case <-ctx.Done():
		_, err := c.wait(ctx, cl)
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
	return p, nil
}

// ID is the request id of the process (for Client.Cancel).
func (p *Process) ID() int64 { return p.cl.id }

// Write sends bytes to the process's stdin.
func (p *Process) Write(b []byte) (int, error) {
	for off := 0; off < len(b); off += FileChunk {
		end := off + FileChunk
		if end > len(b) {
			end = len(b)
		}
		err := p.c.write(map[string]any{"method": p.prefix + ".stdin",
			"params": map[string]any{"id": p.cl.id, "data": base64.StdEncoding.EncodeToString(b[off:end])}})
		if err != nil {
			return off, err
		}
	}
	return len(b), nil
}

// CloseStdin closes the process's stdin; it sees end of file.
func (p *Process) CloseStdin() error {
	return p.c.write(map[string]any{"method": p.prefix + ".stdin_eof", "params": map[string]any{"id": p.cl.id}})
}

// Resize changes the terminal size (ExecInteractive processes only).
func (p *Process) Resize(rows, cols int) error {
	if p.prefix != "exec_tty" {
		return nil
	}
	return p.c.write(map[string]any{"method": "exec_tty.resize",
		"params": map[string]any{"id": p.cl.id, "rows": rows, "cols": cols}})
}

// Cancel terminates the process; Wait then returns an RPCError with CodeCancelled.
func (p *Process) Cancel(ctx context.Context) error {
	_, err := p.c.Cancel(ctx, p.cl.id)
	return err
}

// Wait waits for the process to exit. Output not sent to a writer is in the result.
func (p *Process) Wait() (*ExecResult, error) {
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	if p.waited {
		return p.result, p.waitErr
	}
	p.waited = true
	var raw json.RawMessage
	var err error
	if p.early != nil {
		raw, err = p.early.result, p.early.err
	} else {
		raw, err = p.c.wait(p.ctx, p.cl)
	}
	if err != nil {
		p.waitErr = err
		return nil, err
	}
	var res finalResult
	if err := json.Unmarshal(raw, &res); err != nil {
		p.waitErr = err
		return nil, err
	}
	p.result = &ExecResult{ExitCode: res.ExitCode, DurationMS: res.DurationMS}
	if p.outBuf != nil {
		p.result.Stdout = p.outBuf.Bytes()
	}
	if p.errBuf != nil {
		p.result.Stderr = p.errBuf.Bytes()
	}
	return p.result, nil
}

// ExecInteractive runs a command on a pseudo-terminal of rows x cols, copying stdin to it and
// its output to stdout until it exits, and returns its exit code. Putting a local terminal in
// raw mode is the caller's business (for example with golang.org/x/term).
func (c *Client) ExecInteractive(ctx context.Context, cmd Command, stdin io.Reader, stdout io.Writer, rows, cols int, opts ...ExecOption) (int, error) {
	params := execParams(cmd, opts)
	params["rows"], params["cols"] = rows, cols
	if stdout == nil {
		stdout = io.Discard
	}
	p, err := c.startProcess(ctx, "exec_tty", params, stdout, stdout)
	if err != nil {
		return -1, err
	}
	if stdin != nil {
		go func() {
			if _, err := io.Copy(p, stdin); err == nil {
				_ = p.CloseStdin()
			}
		}()
	}
	res, err := p.Wait()
	if err != nil {
		return -1, err
	}
	return res.ExitCode, nil
}

// WriteFile writes a file in the guest (parents are created), in chunks of any total size.
func (c *Client) WriteFile(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	off := 0
	for {
		end := off + FileChunk
		if end > len(data) {
			end = len(data)
		}
		params := map[string]any{"path": path, "content": base64.StdEncoding.EncodeToString(data[off:end]),
			"mode": uint32(mode.Perm()), "append": off > 0}
		if err := c.Call(ctx, "write_file", params, nil); err != nil {
			return err
		}
		off = end
		if off >= len(data) {
			return nil
		}
	}
}

// ReadFileMax is ReadFile's bound on a whole file.
const ReadFileMax = 256 << 20

// ReadFile reads a whole file from the guest, in chunks, up to ReadFileMax bytes.
func (c *Client) ReadFile(ctx context.Context, path string) ([]byte, error) {
	return c.ReadFileLimit(ctx, path, ReadFileMax)
}

// ReadFileLimit reads a whole file from the guest, in chunks; a file larger than max bytes is
// an error instead of filling memory.
func (c *Client) ReadFileLimit(ctx context.Context, path string, max int) ([]byte, error) {
	var out []byte
	for off := 0; ; {
		var res struct {
			Content string `json:"content"`
		}
		want := FileChunk
		if max-off+1 < want {
			want = max - off + 1 // one byte past the bound tells us the file is larger
		}
		params := map[string]any{"path": path, "offset": off, "length": want}
		if err := c.Call(ctx, "read_file", params, &res); err != nil {
			return nil, err
		}
		chunk, err := base64.StdEncoding.DecodeString(res.Content)
		if err != nil {
			return nil, fmt.Errorf("read_file: bad base64 from the server: %w", err)
		}
		out = append(out, chunk...)
		off += len(chunk)
		if off > max {
			return nil, fmt.Errorf("read_file %s: the file is larger than %d bytes (use ReadFileLimit to read more)", path, max)
		}
		if len(chunk) < want {
			if out == nil {
				out = []byte{}
			}
			return out, nil
		}
	}
}

// ListFiles lists a guest directory.
func (c *Client) ListFiles(ctx context.Context, path string) ([]FileInfo, error) {
	var res struct {
		Files []FileInfo `json:"files"`
	}
	err := c.Call(ctx, "list_files", map[string]any{"path": path}, &res)
	return res.Files, err
}

// PortForward forwards a host port to a guest port.
func (c *Client) PortForward(ctx context.Context, localPort, remotePort int, addresses ...string) ([]PortBinding, error) {
	params := map[string]any{"forwards": []PortForward{{localPort, remotePort}}}
	if len(addresses) > 0 {
		params["addresses"] = addresses
	}
	var res struct {
		Bindings []PortBinding `json:"bindings"`
	}
	err := c.Call(ctx, "port_forward", params, &res)
	return res.Bindings, err
}

// AllowListAdd allows more hosts at run time and returns the whole allow-list.
func (c *Client) AllowListAdd(ctx context.Context, hosts ...string) ([]string, error) {
	return c.allowList(ctx, "allow_list_add", hosts)
}

// AllowListDelete removes hosts from the allow-list and returns the whole allow-list.
func (c *Client) AllowListDelete(ctx context.Context, hosts ...string) ([]string, error) {
	return c.allowList(ctx, "allow_list_delete", hosts)
}

func (c *Client) allowList(ctx context.Context, method string, hosts []string) ([]string, error) {
	var res struct {
		AllowedHosts []string `json:"allowed_hosts"`
	}
	err := c.Call(ctx, method, map[string]any{"hosts": hosts}, &res)
	return res.AllowedHosts, err
}

// Log returns the sandbox's log so far (its last 16 MiB), exactly as written (any bytes).
func (c *Client) Log(ctx context.Context) (string, error) {
	var res struct {
		Content []byte `json:"content"` // base64
	}
	err := c.Call(ctx, "log", nil, &res)
	return string(res.Content), err
}

// stop stops the sandbox; its record stays, stopped, until `matchlock rm`. Returns its id.
func (c *Client) stop(ctx context.Context) (string, error) {
	c.mu.Lock()
	id := c.sandboxID
	c.sandboxID = ""
	c.mu.Unlock()
	if id == "" {
		return "", nil
	}
	return id, c.Call(ctx, "close", nil, nil)
}

// Remove stops the sandbox and removes its record and directory (`matchlock rm`). The client
// stays usable for another Launch.
func (c *Client) Remove(ctx context.Context) error {
	id, err := c.stop(ctx)
	if id == "" || err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, c.cmd.Path, "rm", id).CombinedOutput()
	if err != nil {
		return fmt.Errorf("matchlock rm %s: %v: %s", id, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Close stops the sandbox and ends `matchlock rpc`. The sandbox stays listed as stopped (with
// its log) until `matchlock rm ID`, `matchlock prune` or Remove.
func (c *Client) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	defer installed.Delete(c) // hooks.go
	c.mu.Lock()
	dead := c.dead
	c.mu.Unlock()
	var err error
	if dead == nil {
		_, err = c.stop(ctx)
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
	return err
}
