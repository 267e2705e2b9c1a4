package matchlock

// Tests against the real build/matchlock and real sandboxes. Environment: MATCHLOCK_BIN
// (default ../../../build/matchlock), MATCHLOCK_TEST_IMAGE (default ../../../build/rootfs-busybox).
// Most tests share one sandbox (booted in TestMain); each leaves it usable.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	shared *Client
	image  string
)

func TestMain(m *testing.M) {
	if os.Getenv("MATCHLOCK_BIN") == "" {
		p, _ := filepath.Abs("../../../build/matchlock")
		os.Setenv("MATCHLOCK_BIN", p)
	}
	image = os.Getenv("MATCHLOCK_TEST_IMAGE")
	if image == "" {
		image, _ = filepath.Abs("../../../build/rootfs-busybox")
	}
	var err error
	shared, err = NewClient(Options{})
	if err == nil {
		_, err = shared.Launch(context.Background(), New(image).WithMemory(512).WithEnv("FROM_CREATE", "yes"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot launch the shared sandbox:", err)
		os.Exit(1)
	}
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustExec(t *testing.T, cmd Command, opts ...ExecOption) *ExecResult {
	t.Helper()
	r, err := shared.Exec(ctx(t), cmd, opts...)
	if err != nil {
		t.Fatalf("exec %v: %v", cmd, err)
	}
	return r
}

func TestCreateParams(t *testing.T) {
	sb := New("/img").WithCPUs(2).WithMemory(256).WithTimeout(60).WithEnv("A", "1").
		AllowHost("api.example.com").AddHost("db", "10.0.0.5").AllowPrivateIPs().
		AddSecret("KEY", "s3cret", "api.example.com").WithUser("1000").WithHostname("box").
		WithPortForward(8080, 80)
	got := sb.CreateParams()
	want := map[string]any{
		"image":     "/img",
		"env":       map[string]string{"A": "1"},
		"resources": map[string]any{"cpus": 2.0, "memory_mb": 256, "timeout_seconds": 60},
		"network": map[string]any{
			"allowed_hosts":     []string{"api.example.com"},
			"add_hosts":         []map[string]string{{"host": "db", "ip": "10.0.0.5"}},
			"block_private_ips": false,
			"secrets":           map[string]any{"KEY": map[string]any{"value": "s3cret", "hosts": []string{"api.example.com"}}},
			"hostname":          "box",
		},
		"image_config": map[string]any{"user": "1000"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("create params:\n got %#v\nwant %#v", got, want)
	}
	if pf := sb.PortForwards(); len(pf) != 1 || pf[0] != (PortForward{8080, 80}) {
		t.Fatalf("port forwards: %v", pf)
	}
	if p := New("/img").CreateParams(); !reflect.DeepEqual(p, map[string]any{"image": "/img"}) {
		t.Fatalf("minimal params: %v", p)
	}
}

func TestExecShellAndArgv(t *testing.T) {
	r := mustExec(t, Shell("echo $((6*7)) | sed s/4/four/"))
	if r.ExitCode != 0 || string(r.Stdout) != "four2\n" || len(r.Stderr) != 0 {
		t.Fatalf("shell: %+v", r)
	}
	r = mustExec(t, Argv{"echo", "$HOME", "a b", "*"})
	if string(r.Stdout) != "$HOME a b *\n" {
		t.Fatalf("argv: %q", r.Stdout)
	}
}

func TestExitCodesAndStderr(t *testing.T) {
	for _, code := range []int{0, 1, 7, 255} {
		if r := mustExec(t, Shell(fmt.Sprintf("exit %d", code))); r.ExitCode != code {
			t.Fatalf("exit %d: got %d", code, r.ExitCode)
		}
	}
	r := mustExec(t, Shell("echo out; echo err >&2; exit 3"))
	if r.ExitCode != 3 || string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" {
		t.Fatalf("got %+v", r)
	}
}

func TestEnvAndWorkingDir(t *testing.T) {
	r := mustExec(t, Shell("echo $FROM_CREATE $PER_CALL; pwd"), Env("PER_CALL", "call"), WorkingDir("/tmp"))
	if string(r.Stdout) != "yes call\n/tmp\n" {
		t.Fatalf("got %q", r.Stdout)
	}
}

// firstChunkWriter signals once the first chunk has arrived.
type firstChunkWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan struct{}
	once  sync.Once
}

func (w *firstChunkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	w.once.Do(func() { close(w.first) })
	return len(p), nil
}

func TestExecStreamIncremental(t *testing.T) {
	// The command prints "first", then waits for /tmp/go-stream, which is created only after
	// "first" has reached us: "second" can only appear if streaming delivered the first chunk
	// while the command still ran (otherwise it gives up with exit 9).
	mustExec(t, Shell("rm -f /tmp/go-stream"))
	out := &firstChunkWriter{first: make(chan struct{})}
	var errb bytes.Buffer
	go func() {
		<-out.first
		if err := shared.WriteFile(context.Background(), "/tmp/go-stream", []byte("go"), 0o644); err != nil {
			t.Errorf("write_file: %v", err)
		}
	}()
	r, err := shared.ExecStream(ctx(t), Shell("echo first; i=0; while [ ! -e /tmp/go-stream ]; do i=$((i+1)); "+
		"[ $i -gt 600 ] && exit 9; sleep 0.1; done; echo second; echo e >&2"), out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitCode != 0 || out.buf.String() != "first\nsecond\n" || errb.String() != "e\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.ExitCode, out.buf.String(), errb.String())
	}
}

func TestExecPipeRoundTrip(t *testing.T) {
	data := make([]byte, 300000)
	rand.Read(data)
	p, err := shared.ExecPipe(ctx(t), Argv{"cat"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 40000 {
		end := off + 40000
		if end > len(data) {
			end = len(data)
		}
		if _, err := p.Write(data[off:end]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	r, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if r.ExitCode != 0 || sha256.Sum256(r.Stdout) != sha256.Sum256(data) {
		t.Fatalf("exit %d, %d bytes back of %d", r.ExitCode, len(r.Stdout), len(data))
	}
}

func TestExecInteractive(t *testing.T) {
	var out bytes.Buffer
	code, err := shared.ExecInteractive(ctx(t), Argv{"sh", "-c", "stty size; read x; echo you said $x; exit 5"},
		strings.NewReader("hello\n"), &out, 30, 100)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(out.String(), "\r", "")
	if code != 5 || !strings.Contains(text, "30 100\n") || !strings.Contains(text, "you said hello\n") {
		t.Fatalf("exit %d output %q", code, text)
	}
}

func TestFileRoundTrip50MB(t *testing.T) {
	data := make([]byte, 50*1000*1000+12345)
	rand.Read(data)
	c := ctx(t)
	if err := shared.WriteFile(c, "/tmp/gobig/blob.bin", data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustExec(t, Argv{"stat", "-c", "%s %a", "/tmp/gobig/blob.bin"})
	if want := fmt.Sprintf("%d 600\n", len(data)); string(r.Stdout) != want {
		t.Fatalf("stat: %q, want %q", r.Stdout, want)
	}
	back, err := shared.ReadFile(c, "/tmp/gobig/blob.bin")
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(data) || sha256.Sum256(back) != sha256.Sum256(data) {
		t.Fatalf("read back %d bytes, differing from the %d written", len(back), len(data))
	}
	mustExec(t, Shell("rm -rf /tmp/gobig"))
}

func TestEmptyFileAndErrors(t *testing.T) {
	c := ctx(t)
	if err := shared.WriteFile(c, "/tmp/empty", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := shared.ReadFile(c, "/tmp/empty"); err != nil || len(b) != 0 {
		t.Fatalf("empty: %q %v", b, err)
	}
	if _, err := shared.ReadFile(c, "/no/such/file"); !IsCode(err, CodeFileFailed) {
		t.Fatalf("missing file: %v", err)
	}
	if err := shared.WriteFile(c, "relative", []byte("x"), 0o644); !IsCode(err, CodeParams) {
		t.Fatalf("relative path: %v", err)
	}
}

func TestListFiles(t *testing.T) {
	mustExec(t, Shell("rm -rf /tmp/gols && mkdir -p /tmp/gols/sub"))
	if err := shared.WriteFile(ctx(t), "/tmp/gols/a.txt", []byte("12345"), 0o640); err != nil {
		t.Fatal(err)
	}
	files, err := shared.ListFiles(ctx(t), "/tmp/gols")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]FileInfo{}
	for _, f := range files {
		got[f.Name] = f
	}
	a, sub := got["a.txt"], got["sub"]
	if len(got) != 2 || a.Size != 5 || a.Mode != 0o640 || a.IsDir || !sub.IsDir {
		t.Fatalf("list: %+v", files)
	}
}

func TestContextCancelsExec(t *testing.T) {
	c, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the command really runs in the guest.
		r, err := shared.Exec(context.Background(), Shell("for i in $(seq 300); do pidof sleep >/dev/null && exit 0; sleep 0.1; done; exit 1"))
		if err != nil || r.ExitCode != 0 {
			t.Errorf("the sleep never started: %v %+v", err, r)
		}
		cancel()
	}()
	_, err := shared.Exec(c, Shell("sleep 300"))
	if !IsCode(err, CodeCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want a cancelled RPCError wrapping context.Canceled", err)
	}
	if r := mustExec(t, Shell("echo alive")); string(r.Stdout) != "alive\n" {
		t.Fatalf("after cancel: %q", r.Stdout)
	}
}

func TestContextDeadlineCancelsStream(t *testing.T) {
	c, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var out bytes.Buffer
	_, err := shared.ExecStream(c, Shell("echo started; sleep 300"), &out, nil)
	if !IsCode(err, CodeCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestProcessCancel(t *testing.T) {
	p, err := shared.ExecPipe(ctx(t), Argv{"cat"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cancel(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(); !IsCode(err, CodeCancelled) {
		t.Fatalf("wait after cancel: %v", err)
	}
	if ok, err := shared.Cancel(ctx(t), 999999); ok || err != nil {
		t.Fatalf("cancel of nothing: %v %v", ok, err)
	}
}

func TestConcurrentExecs(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := shared.Exec(context.Background(), Shell(fmt.Sprintf("sleep 0.$((RANDOM %% 5)); echo %d", i)))
			if err != nil {
				errs <- err
			} else if string(r.Stdout) != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("exec %d got %q", i, r.Stdout)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestUnsupportedAndRefused(t *testing.T) {
	c := ctx(t)
	if _, err := shared.PortForward(c, 0, 0); !IsCode(err, CodeParams) {
		t.Fatalf("port_forward to port 0: %v", err)
	}
	if hosts, err := shared.AllowListAdd(c, "go-sdk.test"); err != nil || !contains(hosts, "go-sdk.test") {
		t.Fatalf("allow_list_add: %v %v", hosts, err)
	}
	if hosts, err := shared.AllowListDelete(c, "go-sdk.test"); err != nil || contains(hosts, "go-sdk.test") {
		t.Fatalf("allow_list_delete: %v %v", hosts, err)
	}
	if s, err := shared.Log(c); err != nil || !strings.Contains(s, "matchlock") {
		t.Fatalf("log: %q %v", s, err)
	}
}

// The server holds several sandboxes; a request that names none is the one sandbox's only while
// there is one (spec/rpc.md). The client's own calls name none, so a second goes through Call.
func TestSecondSandboxNamedByID(t *testing.T) {
	c := ctx(t)
	var created struct {
		ID string `json:"id"`
	}
	if err := shared.Call(c, "create", map[string]any{"image": image}, &created); err != nil {
		t.Fatalf("raw create: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = shared.Call(context.Background(), "close", map[string]any{"sandbox": created.ID}, nil)
		}
	}()
	var res struct {
		ExitCode int `json:"exit_code"`
	}
	err := shared.Call(c, "exec", map[string]any{"sandbox": created.ID, "command": "hostname"}, &res)
	if err != nil || res.ExitCode != 0 || created.ID == shared.SandboxID() {
		t.Fatalf("exec in %s: %v %+v", created.ID, err, res)
	}
	if err := shared.Call(c, "exec", map[string]any{"command": "true"}, nil); !IsCode(err, CodeParams) || !strings.Contains(err.Error(), `"sandbox": ID`) {
		t.Fatalf("exec naming no sandbox of two: %v", err)
	}
	if r := mustExec(t, Shell("echo mine")); string(r.Stdout) != "mine\n" {
		t.Fatalf("the client's own sandbox names itself: %q", r.Stdout)
	}
	// A handle for the raw one: tracked, closed through it.
	h := shared.Handle(created.ID)
	if shared.Handle(created.ID) != h || len(shared.Sandboxes()) != 2 {
		t.Fatalf("Handle: %v", shared.Sandboxes())
	}
	if r, err := h.Exec(c, Shell("echo theirs")); err != nil || string(r.Stdout) != "theirs\n" {
		t.Fatalf("exec through Handle: %v", err)
	}
	if err := h.Close(c); err != nil {
		t.Fatalf("close %s: %v", created.ID, err)
	}
	closed = true
	if len(shared.Sandboxes()) != 1 {
		t.Fatalf("after closing the raw one: %v", shared.Sandboxes())
	}
	if r := mustExec(t, Shell("echo mine")); string(r.Stdout) != "mine\n" {
		t.Fatalf("the client's own sandbox after the second closed: %q", r.Stdout)
	}
}

func TestDeadServer(t *testing.T) {
	if _, err := NewClient(Options{Binary: "/no/such/matchlock"}); err == nil {
		t.Fatal("a missing binary started")
	}
	c, err := NewClient(Options{Binary: "/bin/false"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx(t), Shell("true"))
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	c.Close()
}

func TestOwnSandboxRefusalsAndRelaunch(t *testing.T) {
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cx := ctx(t)
	if _, err := c.Exec(cx, Shell("true")); !IsCode(err, CodeSandboxFailed) {
		t.Fatalf("exec before launch: %v", err)
	}
	if _, err := c.Launch(cx, New(image).AddSecret("K", "v", "api.example.com").WithNoNetwork()); !IsCode(err, CodeParams) {
		t.Fatalf("a secret without a network must be refused: %v", err)
	}
	if _, err := c.Launch(cx, New(image).WithHostname("gobox").AddSecret("TOKEN", "tok-real-42", "api.example.com")); err != nil {
		t.Fatal(err)
	}
	r, err := c.Exec(cx, Argv{"hostname"})
	if err != nil || string(r.Stdout) != "gobox\n" {
		t.Fatalf("hostname: %v %+v", err, r)
	}
	r, err = c.Exec(cx, Shell("echo $TOKEN; env | grep -c tok-real-42"))
	if err != nil || !regexp.MustCompile(`^SANDBOX_SECRET_[0-9a-f]{32}\n0\n$`).Match(r.Stdout) {
		t.Fatalf("secret inside: %v %q", err, r.Stdout)
	}
	if err := c.Remove(cx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(cx, Shell("true")); !IsCode(err, CodeSandboxFailed) {
		t.Fatalf("exec after remove: %v", err)
	}
}

// Issue 11 item 9: fields the server does not implement are refused by name, at every level.
func TestCreateRefusesWhatItDoesNotImplement(t *testing.T) {
	if _, ok := New(image).CreateParams()["resources"]; ok {
		t.Fatal("resources sent although none was set")
	}
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cx := ctx(t)
	cases := []struct {
		extra map[string]any
		name  string
	}{
		{map[string]any{"privileged": true}, "privileged"},
		{map[string]any{"resources": map[string]any{"disk_size_mb": 10}}, "resources.disk_size_mb"},
		{map[string]any{"network": map[string]any{"dns_servers": []string{"1.1.1.1"}}}, "network.dns_servers"},
		{map[string]any{"network": map[string]any{"mtu": 1400}}, "network.mtu"},
		{map[string]any{"network": map[string]any{"intercept": true}}, "network.intercept"},
		{map[string]any{"network": map[string]any{"secrets": map[string]any{"K": map[string]any{
			"value": "v", "hosts": []string{"a.test"}, "placeholder": "P"}}}}, "network.secrets.K.placeholder"},
		{map[string]any{"vfs": map[string]any{"interception": map[string]any{}}}, "vfs.interception"},
		{map[string]any{"extra_disks": []any{}}, "extra_disks"},
		{map[string]any{"no_such_field": 1}, "no_such_field"},
	}
	for _, tc := range cases {
		p := map[string]any{"image": image}
		for k, v := range tc.extra {
			p[k] = v
		}
		err := c.Call(cx, "create", p, nil)
		if !IsCode(err, CodeParams) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if _, err := c.Launch(cx, New(image).WithDiskSize(10)); !IsCode(err, CodeParams) || !strings.Contains(err.Error(), "disk_size_mb") {
		t.Fatalf("WithDiskSize: %v", err)
	}
}

// Issue 11 items 2 and 14: 20 env variables then an exec (a heap overflow before); past the
// maximum a clear error; close leaves a stopped record that `matchlock rm` removes.
func TestTwentyEnvThenExecAndCloseLeavesRecord(t *testing.T) {
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	cx := ctx(t)
	big := New(image)
	for i := 0; i < 4097; i++ {
		big.WithEnv(fmt.Sprintf("E%d", i), "v")
	}
	if _, err := c.Launch(cx, big); !IsCode(err, CodeParams) || !strings.Contains(err.Error(), "at most 4096") {
		t.Fatalf("4097 env: %v", err)
	}
	sb := New(image)
	for i := 0; i < 20; i++ {
		sb.WithEnv(fmt.Sprintf("E%d", i), fmt.Sprint(i))
	}
	h, err := c.Launch(cx, sb)
	if err != nil {
		t.Fatal(err)
	}
	id := h.ID()
	r, err := c.Exec(cx, Shell("env | grep -c ^E"), Env("F1", "x"))
	if err != nil || string(r.Stdout) != "20\n" {
		t.Fatalf("exec after 20 env: %v %+v", err, r)
	}
	c.Close()
	bin := os.Getenv("MATCHLOCK_BIN")
	out, _ := exec.Command(bin, "ls").Output()
	if !regexp.MustCompile(`(?m)^` + id + `\s+stopped\s`).Match(out) {
		t.Fatalf("ls after close: want %s stopped:\n%s", id, out)
	}
	if out, err := exec.Command(bin, "rm", id).CombinedOutput(); err != nil {
		t.Fatalf("rm after close: %v %s", err, out)
	}
}

// Issue 11 items 7 and 10: capped exec output is marked; read_file has a total bound; a
// non-UTF-8 console byte and file name come through.
func TestCapsAndNonUTF8(t *testing.T) {
	c := ctx(t)
	r := mustExec(t, Shell("head -c 17000000 /dev/zero"))
	if !r.StdoutTruncated || !r.Truncated || r.StderrTruncated || len(r.Stdout) != 16<<20 {
		t.Fatalf("17 MB of output: truncated=%v/%v/%v len %d", r.Truncated, r.StdoutTruncated, r.StderrTruncated, len(r.Stdout))
	}
	if err := shared.WriteFile(c, "/tmp/go-hundred", bytes.Repeat([]byte("x"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := shared.ReadFileLimit(c, "/tmp/go-hundred", 50); err == nil || !strings.Contains(err.Error(), "larger than 50") {
		t.Fatalf("ReadFileLimit 50 of 100: %v", err)
	}
	if b, err := shared.ReadFileLimit(c, "/tmp/go-hundred", 100); err != nil || len(b) != 100 {
		t.Fatalf("ReadFileLimit 100 of 100: %v %d", err, len(b))
	}
	mustExec(t, Shell("rm -rf /tmp/gonu && mkdir /tmp/gonu && touch /tmp/gonu/$(printf 'a\\377b') && printf 'go-mark-\\377-end\\n' > /dev/console"))
	files, err := shared.ListFiles(c, "/tmp/gonu")
	if err != nil || len(files) != 1 || string(files[0].NameBytes) != "a\xffb" || files[0].Name != "a\uFFFDb" {
		t.Fatalf("list_files: %v %+v", err, files)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := shared.Log(c)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(s, "go-mark-\xff-end") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("log: the console line with \\377 never arrived")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMountParams(t *testing.T) {
	p := New("/img").WithMount("/h", "", "").WithMounts(Mount{Host: "/r", Guest: "/r", Mode: "ro"}).
		WithVolume("data", "/d", "").CreateParams()
	want := []map[string]string{{"host": "/h"}, {"host": "/r", "guest": "/r", "mode": "ro"},
		{"host": "@data", "guest": "/d"}}
	if !reflect.DeepEqual(p["mounts"], want) {
		t.Fatalf("mounts: %#v", p["mounts"])
	}
}

// Host folders: a rw and an overlay mount (at the workspace) of fresh folders in one sandbox.
func TestMounts(t *testing.T) {
	rw, ov := t.TempDir(), t.TempDir()
	for _, d := range []string{rw, ov} {
		if err := os.WriteFile(filepath.Join(d, "f.txt"), []byte("host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cx := ctx(t)
	if _, err := c.Launch(cx, New(image).WithMount(rw, "/rw", "rw").WithMounts(Mount{Host: ov})); err != nil {
		t.Fatal(err)
	}
	r, err := c.Exec(cx, Shell("cat /rw/f.txt && echo guest >/rw/new && chmod 600 /rw/new && echo x >/workspace/f.txt && cat /workspace/f.txt"))
	if err != nil || r.ExitCode != 0 || string(r.Stdout) != "host\nx\n" {
		t.Fatalf("exec: %v %+v", err, r)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "new")); err != nil || string(b) != "guest\n" {
		t.Fatalf("rw write on the host: %q %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(rw, "new")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("rw mode on the host: %v %v", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(ov, "f.txt")); err != nil || string(b) != "host\n" {
		t.Fatalf("overlay changed the host: %q %v", b, err)
	}
	c2, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := c2.Launch(cx, New(image).WithMount(rw, "/proc", "")); !IsCode(err, CodeParams) ||
		!strings.Contains(err.Error(), "guest path /proc: reserved") {
		t.Fatalf("mount over /proc: %v", err)
	}
}

func TestErrorCodesMatchSpecTable(t *testing.T) {
	spec, err := os.ReadFile("../../../spec/rpc.md")
	if err != nil {
		t.Fatal(err)
	}
	table := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^\| (-\d+) \| ([A-Z_]+) \|`).FindAllStringSubmatch(string(spec), -1) {
		var code int
		fmt.Sscan(m[1], &code)
		table[m[2]] = code
	}
	if len(table) != 9 || !reflect.DeepEqual(table, ErrorCodes) {
		t.Fatalf("spec/rpc.md's table %v, ErrorCodes %v", table, ErrorCodes)
	}
}

// One client, two more sandboxes driven at once (the shared one stays the client's too).
func TestTwoSandboxesConcurrently(t *testing.T) {
	c, err := NewClient(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cx := ctx(t)
	a, err := c.Create(cx, SandboxOptions{Image: image, Hostname: "alpha", Env: map[string]string{"WHO": "a"}, MemoryMB: 256})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Launch(cx, New(image).WithHostname("beta").WithEnv("WHO", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if hs := c.Sandboxes(); len(hs) != 2 || hs[0] != a || hs[1] != b {
		t.Fatalf("sandboxes: %v", hs)
	}
	var wg sync.WaitGroup
	got := make([]string, 2)
	errs := make([]error, 2)
	for i, h := range []*SandboxHandle{a, b} {
		wg.Add(1)
		go func(i int, h *SandboxHandle) {
			defer wg.Done()
			if errs[i] = h.Files.Write(cx, "/tmp/mine", []byte(h.ID()), 0o644); errs[i] != nil {
				return
			}
			r, err := h.Exec(cx, Shell("sleep 1; echo $(hostname) $WHO $(cat /tmp/mine)"))
			if err == nil {
				got[i] = string(r.Stdout)
			}
			errs[i] = err
		}(i, h)
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || got[0] != "alpha a "+a.ID()+"\n" || got[1] != "beta b "+b.ID()+"\n" {
		t.Fatalf("concurrent execs: %v %q", errs, got)
	}
	// A cancelled long exec in one leaves both usable.
	short, cancel := context.WithTimeout(cx, 2*time.Second)
	defer cancel()
	if _, err := a.Exec(short, Shell("sleep 120")); !IsCode(err, CodeCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("long exec past its context: %v", err)
	}
	for _, h := range []*SandboxHandle{a, b} {
		if r, err := h.Exec(cx, Shell("echo ok")); err != nil || string(r.Stdout) != "ok\n" {
			t.Fatalf("%s after the cancel: %v", h.ID(), err)
		}
	}
	// Files of one are not the other's; remove works.
	if err := a.Files.Remove(cx, "/tmp/mine", false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Files.Read(cx, "/tmp/mine"); !IsCode(err, CodeFileFailed) {
		t.Fatalf("read after remove: %v", err)
	}
	if d, err := b.Files.Read(cx, "/tmp/mine"); err != nil || string(d) != b.ID() {
		t.Fatalf("b's file: %q %v", d, err)
	}
	// A denied lookup in b is an event of b's, not a's.
	if _, err := b.Exec(cx, Shell("nslookup -type=A q1.denied.test >/dev/null 2>&1")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-b.Events():
		if ev.Sandbox != b.ID() || ev.Type != "network" || ev.Network == nil || !ev.Network.Blocked {
			t.Fatalf("event: %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event for b")
	}
	select {
	case ev := <-a.Events():
		t.Fatalf("a got b's event: %+v", ev)
	default:
	}
	// Close, then Remove (as the Go Matchlock's SDK does); a closed handle refuses.
	if err := a.Close(cx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(cx, Shell("true")); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("exec on a closed handle: %v", err)
	}
	if err := a.Remove(cx); err != nil {
		t.Fatalf("remove after close: %v", err)
	}
	if out, _ := exec.Command(os.Getenv("MATCHLOCK_BIN"), "ls").Output(); strings.Contains(string(out), a.ID()) {
		t.Fatalf("%s still listed:\n%s", a.ID(), out)
	}
	if hs := c.Sandboxes(); len(hs) != 1 || hs[0] != b {
		t.Fatalf("sandboxes after closing a: %v", hs)
	}
}

// A create whose context has ended is cancelled (CodeCancelled wrapping the context's error),
// and the client holds no handle for it.
func TestCancelledCreate(t *testing.T) {
	cx, cancel := context.WithCancel(context.Background())
	cancel()
	before := len(shared.Sandboxes())
	if _, err := shared.Create(cx, SandboxOptions{Image: image}); !IsCode(err, CodeCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("create with an ended context: %v", err)
	}
	if n := len(shared.Sandboxes()); n != before {
		t.Fatalf("sandboxes: %d, want %d", n, before)
	}
}
