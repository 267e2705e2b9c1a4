package matchlock

import (
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
)

// EventQueueMax is the number of unread events a handle keeps; past it events are dropped and
// counted (DroppedEvents): the client's reader never waits for a handle nobody reads.
const EventQueueMax = 4096

// SandboxHandle is one sandbox of a Client (returned by Create and Launch). Every request it
// sends names its sandbox, so one client drives many at once. Its methods are safe for
// concurrent use; each takes a context: when it ends, the request is cancelled on the server
// and an RPCError with CodeCancelled (wrapping the context's error) is returned.
type SandboxHandle struct {
	c     *Client
	id    string
	Files *Files // the sandbox's files: read, write, list, remove

	mu      sync.Mutex
	closed  bool
	events  chan Event
	dropped int
}

// Files reads, writes, lists and removes a sandbox's files, of any size (large files travel in
// chunks of FileChunk bytes).
type Files struct{ h *SandboxHandle }

// Event is a server event notification (spec/rpc.md): Type is "network" or "file"; Network
// holds the request's fields.
type Event struct {
	Type      string          `json:"type"`
	Sandbox   string          `json:"sandbox"`
	Timestamp json.RawMessage `json:"timestamp"`
	Network   *NetworkEvent   `json:"network"`
	Count     int             `json:"count"`
	Raw       json.RawMessage `json:"-"`
}

// NetworkEvent is one request the sandbox made (or was refused).
type NetworkEvent struct {
	Method        string `json:"method"`
	URL           string `json:"url"`
	Host          string `json:"host"`
	StatusCode    int    `json:"status_code"`
	RequestBytes  int64  `json:"request_bytes"`
	ResponseBytes int64  `json:"response_bytes"`
	DurationMS    int64  `json:"duration_ms"`
	Blocked       bool   `json:"blocked"`
	BlockReason   string `json:"block_reason"`
}

func newHandle(c *Client, id string) *SandboxHandle {
	h := &SandboxHandle{c: c, id: id, events: make(chan Event, EventQueueMax)}
	h.Files = &Files{h}
	return h
}

// ID is the sandbox's id (as `matchlock ls` shows it).
func (h *SandboxHandle) ID() string { return h.id }

// Closed reports whether Close was called.
func (h *SandboxHandle) Closed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

func (h *SandboxHandle) params(params any) (map[string]any, error) {
	p := map[string]any{}
	if m, ok := params.(map[string]any); ok {
		for k, v := range m {
			p[k] = v
		}
	} else if params != nil {
		return nil, fmt.Errorf("params must be a map[string]any")
	}
	if h.id != "" { // "": the client's nameless handle (Client.only)
		p["sandbox"] = h.id
	}
	return p, nil
}

func (h *SandboxHandle) start(method string, params map[string]any, notify func(string, json.RawMessage)) (*call, error) {
	if h.Closed() {
		return nil, fmt.Errorf("%s: sandbox %s is closed", method, h.id)
	}
	p, _ := h.params(params)
	return h.c.start(method, p, notify)
}

func (h *SandboxHandle) call(ctx context.Context, method string, params map[string]any, result any) error {
	cl, err := h.start(method, params, nil)
	if err != nil {
		return err
	}
	raw, err := h.c.wait(ctx, cl)
	if err != nil {
		return err
	}
	if result != nil && len(raw) > 0 {
		return json.Unmarshal(raw, result)
	}
	return nil
}

// Call sends one raw JSON-RPC request for this sandbox (params a map[string]any or nil) and
// decodes its result into result (may be nil).
func (h *SandboxHandle) Call(ctx context.Context, method string, params any, result any) error {
	p, err := h.params(params)
	if err != nil {
		return err
	}
	delete(p, "sandbox")
	return h.call(ctx, method, p, result)
}

// Events returns the channel of this sandbox's events; it is closed when the sandbox is.
func (h *SandboxHandle) Events() <-chan Event { return h.events }

// DroppedEvents is the number of events lost because Events was not read fast enough.
func (h *SandboxHandle) DroppedEvents() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropped
}

func (h *SandboxHandle) pushEvent(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	select {
	case h.events <- ev:
	default:
		h.dropped++
	}
}

// Close stops the sandbox; it stays listed as stopped (with its log) until Remove or
// `matchlock rm`. Closing twice does nothing.
func (h *SandboxHandle) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	close(h.events)
	h.mu.Unlock()
	defer h.c.forget(h)
	return h.c.Call(ctx, "close", map[string]any{"sandbox": h.id}, nil)
}

// Remove stops the sandbox if it runs, then removes its record and directory (`matchlock rm`).
// It also works after Close.
func (h *SandboxHandle) Remove(ctx context.Context) error {
	if err := h.Close(ctx); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, h.c.cmd.Path, "rm", h.id).CombinedOutput()
	if err != nil {
		return fmt.Errorf("matchlock rm %s: %v: %s", h.id, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Remove removes a file (or, with recursive, a directory tree) in the guest. The protocol has
// no such request: this runs the image's rm, so the image needs one.
func (f *Files) Remove(ctx context.Context, path string, recursive bool) error {
	argv := Argv{"rm", "-f"}
	if recursive {
		argv = append(argv, "-r")
	}
	res, err := f.h.Exec(ctx, append(argv, "--", path))
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("remove %s: %s", path, strings.TrimSpace(string(res.Stderr)))
	}
	return nil
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
func (h *SandboxHandle) Exec(ctx context.Context, cmd Command, opts ...ExecOption) (*ExecResult, error) {
	var res struct {
		ExitCode   int    `json:"exit_code"`
		Stdout     string `json:"stdout"`
		Stderr     string `json:"stderr"`
		DurationMS int64  `json:"duration_ms"`
		Truncated  bool   `json:"truncated"`
		StdoutTr   bool   `json:"stdout_truncated"`
		StderrTr   bool   `json:"stderr_truncated"`
	}
	if err := h.call(ctx, "exec", execParams(cmd, opts), &res); err != nil {
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
func (h *SandboxHandle) ExecStream(ctx context.Context, cmd Command, stdout, stderr io.Writer, opts ...ExecOption) (*ExecResult, error) {
	cl, err := h.start("exec_stream", execParams(cmd, opts), outputNotifier(stdout, stderr, nil))
	if err != nil {
		return nil, err
	}
	raw, err := h.c.wait(ctx, cl)
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
func (h *SandboxHandle) ExecPipe(ctx context.Context, cmd Command, stdout, stderr io.Writer, opts ...ExecOption) (*Process, error) {
	return h.startProcess(ctx, "exec_pipe", execParams(cmd, opts), stdout, stderr)
}

func (h *SandboxHandle) startProcess(ctx context.Context, method string, params map[string]any, stdout, stderr io.Writer) (*Process, error) {
	p := &Process{c: h.c, ctx: ctx, prefix: method}
	if stdout == nil {
		p.outBuf = &lockedBuffer{}
		stdout = p.outBuf
	}
	if stderr == nil {
		p.errBuf = &lockedBuffer{}
		stderr = p.errBuf
	}
	ready := make(chan struct{})
	cl, err := h.start(method, params, outputNotifier(stdout, stderr, ready))
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
		_, err := h.c.wait(ctx, cl)
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
func (h *SandboxHandle) ExecInteractive(ctx context.Context, cmd Command, stdin io.Reader, stdout io.Writer, rows, cols int, opts ...ExecOption) (int, error) {
	params := execParams(cmd, opts)
	params["rows"], params["cols"] = rows, cols
	if stdout == nil {
		stdout = io.Discard
	}
	p, err := h.startProcess(ctx, "exec_tty", params, stdout, stdout)
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

// Write writes a file in the guest (parents are created), in chunks of any total size.
func (f *Files) Write(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	off := 0
	for {
		end := off + FileChunk
		if end > len(data) {
			end = len(data)
		}
		params := map[string]any{"path": path, "content": base64.StdEncoding.EncodeToString(data[off:end]),
			"mode": uint32(mode.Perm()), "append": off > 0}
		if err := f.h.call(ctx, "write_file", params, nil); err != nil {
			return err
		}
		off = end
		if off >= len(data) {
			return nil
		}
	}
}

// ReadFileMax is Files.Read's bound on a whole file.
const ReadFileMax = 256 << 20

// Read reads a whole file from the guest, in chunks, up to ReadFileMax bytes.
func (f *Files) Read(ctx context.Context, path string) ([]byte, error) {
	return f.ReadLimit(ctx, path, ReadFileMax)
}

// ReadLimit reads a whole file from the guest, in chunks; a file larger than max bytes is
// an error instead of filling memory.
func (f *Files) ReadLimit(ctx context.Context, path string, max int) ([]byte, error) {
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
		if err := f.h.call(ctx, "read_file", params, &res); err != nil {
			return nil, err
		}
		chunk, err := base64.StdEncoding.DecodeString(res.Content)
		if err != nil {
			return nil, fmt.Errorf("read_file: bad base64 from the server: %w", err)
		}
		out = append(out, chunk...)
		off += len(chunk)
		if off > max {
			return nil, fmt.Errorf("read_file %s: the file is larger than %d bytes (use ReadLimit to read more)", path, max)
		}
		if len(chunk) < want {
			if out == nil {
				out = []byte{}
			}
			return out, nil
		}
	}
}

// List lists a guest directory.
func (f *Files) List(ctx context.Context, path string) ([]FileInfo, error) {
	var res struct {
		Files []FileInfo `json:"files"`
	}
	err := f.h.call(ctx, "list_files", map[string]any{"path": path}, &res)
	return res.Files, err
}

// PortForward forwards a host port to a guest port.
func (h *SandboxHandle) PortForward(ctx context.Context, localPort, remotePort int, addresses ...string) ([]PortBinding, error) {
	params := map[string]any{"forwards": []PortForward{{localPort, remotePort}}}
	if len(addresses) > 0 {
		params["addresses"] = addresses
	}
	var res struct {
		Bindings []PortBinding `json:"bindings"`
	}
	err := h.call(ctx, "port_forward", params, &res)
	return res.Bindings, err
}

// AllowListAdd allows more hosts at run time and returns the whole allow-list.
func (h *SandboxHandle) AllowListAdd(ctx context.Context, hosts ...string) ([]string, error) {
	return h.allowList(ctx, "allow_list_add", hosts)
}

// AllowListDelete removes hosts from the allow-list and returns the whole allow-list.
func (h *SandboxHandle) AllowListDelete(ctx context.Context, hosts ...string) ([]string, error) {
	return h.allowList(ctx, "allow_list_delete", hosts)
}

func (h *SandboxHandle) allowList(ctx context.Context, method string, hosts []string) ([]string, error) {
	var res struct {
		AllowedHosts []string `json:"allowed_hosts"`
	}
	err := h.call(ctx, method, map[string]any{"hosts": hosts}, &res)
	return res.AllowedHosts, err
}

// Log returns the sandbox's log so far (its last 16 MiB), exactly as written (any bytes).
func (h *SandboxHandle) Log(ctx context.Context) (string, error) {
	var res struct {
		Content []byte `json:"content"` // base64
	}
	err := h.call(ctx, "log", nil, &res)
	return string(res.Content), err
}
