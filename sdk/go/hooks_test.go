package sdk

// Hook tests: one sandbox of its own (busybox, a rw host folder at /workspace) reaching a
// loopback HTTPS upstream (tests/sdk/hooks_upstream.py) through the proxy.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type hookEnv struct {
	c      *Client
	url    string
	log    string
	work   string
	mu     sync.Mutex
	events []map[string]any
	asked  []NetworkRequest
	files  []FileRequest
}

const hookSecret = "sk-go-live-0123456789"

func (e *hookEnv) hooks() *Hooks {
	return &Hooks{
		Network: []NetworkRule{
			{Name: "no-admin", Path: "/admin/**", Action: "block"},
			{Name: "cb", Path: "/cb", Callback: func(ctx context.Context, rq NetworkRequest) (NetworkDecision, error) {
				e.mu.Lock()
				e.asked = append(e.asked, rq)
				e.mu.Unlock()
				return Allow(map[string]string{"X-From-Callback": "go-" + rq.Method}), nil
			}},
			{Name: "slow", Path: "/slow", Callback: func(ctx context.Context, rq NetworkRequest) (NetworkDecision, error) {
				time.Sleep(4 * time.Second) // past the timeout: the server has refused already
				return Allow(nil), nil
			}},
			{Name: "fails", Path: "/fails", Callback: func(ctx context.Context, rq NetworkRequest) (NetworkDecision, error) {
				return NetworkDecision{}, errors.New("no")
			}},
		},
		Files: []FileRule{
			{Name: "locked", Ops: []string{"write", "create", "remove"}, Path: "/workspace/locked/**", Action: "block"},
			{Name: "rw", Ops: []string{"write"}, Path: "/workspace/rewrite.txt", Rewrite: func(ctx context.Context, rq FileRequest) ([]byte, error) {
				e.mu.Lock()
				e.files = append(e.files, rq)
				e.mu.Unlock()
				return append([]byte("go:"), rq.Data...), nil
			}},
		},
		CallbackTimeoutMS: 1500,
		OnEvent: func(p json.RawMessage) {
			var m map[string]any
			if json.Unmarshal(p, &m) == nil {
				e.mu.Lock()
				e.events = append(e.events, m)
				e.mu.Unlock()
			}
		},
	}
}

func newHookEnv(t *testing.T) *hookEnv {
	t.Helper()
	dir := t.TempDir()
	up := filepath.Join(dir, "up")
	os.Mkdir(up, 0o755)
	srv := exec.Command("python3", "../../tests/sdk/hooks_upstream.py", up)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	var port string
	for i := 0; i < 200 && port == ""; i++ {
		b, _ := os.ReadFile(filepath.Join(up, "port"))
		port = string(b)
		time.Sleep(50 * time.Millisecond)
	}
	if port == "" {
		t.Fatal("the upstream did not start")
	}
	e := &hookEnv{url: "https://api.test:" + port, log: filepath.Join(up, "requests.log"), work: filepath.Join(dir, "work")}
	os.MkdirAll(filepath.Join(e.work, "locked"), 0o755)
	os.WriteFile(filepath.Join(e.work, "locked", "keep.txt"), []byte("original\n"), 0o644)
	// The proxy (in `matchlock rpc`) trusts the test CA through OpenSSL's default path.
	old, had := os.LookupEnv("SSL_CERT_FILE")
	os.Setenv("SSL_CERT_FILE", filepath.Join(up, "ca.pem"))
	c, err := NewClient(Options{})
	if had {
		os.Setenv("SSL_CERT_FILE", old)
	} else {
		os.Unsetenv("SSL_CERT_FILE")
	}
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	t.Cleanup(func() { c.Close() })
	host := "api.test:" + port
	sb := New(image).AllowHost(host).AddHost("api.test", "127.0.0.1").AddSecret("API_KEY", hookSecret, host).
		WithMount(e.work, "/workspace", "rw")
	if _, err := c.LaunchWithHooks(ctx(t), sb, e.hooks()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *hookEnv) wget(t *testing.T, path string, headers ...string) string {
	t.Helper()
	cmd := "wget -q -S -O - "
	for _, h := range headers {
		cmd += `--header "` + h + `" `
	}
	r, err := e.c.Exec(ctx(t), Shell(cmd+"'"+e.url+path+"' 2>&1; echo rc=$?"))
	if err != nil {
		t.Fatal(err)
	}
	return string(r.Stdout)
}

func (e *hookEnv) upstream() string {
	b, _ := os.ReadFile(e.log)
	return string(b)
}

func (e *hookEnv) event(t *testing.T, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	for i := 0; i < 100; i++ {
		e.mu.Lock()
		for _, ev := range e.events {
			if pred(ev) {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no such event among %d", len(e.events))
	return nil
}

func sub(m map[string]any, k string) map[string]any { v, _ := m[k].(map[string]any); return v }

func TestHooks(t *testing.T) {
	e := newHookEnv(t)

	t.Run("RuleBlocksAPath", func(t *testing.T) {
		out := e.wget(t, "/admin/users")
		if !strings.Contains(out, "403 Forbidden") {
			t.Fatalf("guest got: %s", out)
		}
		if strings.Contains(e.upstream(), "/admin") {
			t.Fatalf("the upstream saw it: %s", e.upstream())
		}
		ev := e.event(t, func(m map[string]any) bool {
			n := sub(m, "network")
			return m["type"] == "network" && n["blocked"] == true && strings.Contains(n["url"].(string), "/admin/users")
		})
		if r := sub(ev, "network")["block_reason"].(string); !strings.Contains(r, "hook rule no-admin") {
			t.Fatalf("block_reason %q", r)
		}
	})

	t.Run("CallbackRewritesAHeader", func(t *testing.T) {
		out := e.wget(t, "/cb", "X-Key: $API_KEY")
		if !strings.Contains(out, "rc=0") {
			t.Fatalf("guest got: %s", out)
		}
		log := e.upstream()
		if !strings.Contains(log, "x-from-callback: go-GET") || !strings.Contains(log, "X-Key: "+hookSecret) {
			t.Fatalf("the upstream got: %s", log)
		}
		e.mu.Lock()
		rq := e.asked[len(e.asked)-1]
		e.mu.Unlock()
		if !strings.HasPrefix(rq.Headers["x-key"], "SANDBOX_SECRET_") || strings.Contains(rq.Headers["x-key"], hookSecret) {
			t.Fatalf("the callback saw x-key %q", rq.Headers["x-key"])
		}
	})

	t.Run("HangingOrFailingCallbackFailsClosed", func(t *testing.T) {
		for _, p := range []string{"/slow", "/fails"} {
			if out := e.wget(t, p); !strings.Contains(out, "403 Forbidden") {
				t.Fatalf("%s: guest got: %s", p, out)
			}
			if strings.Contains(e.upstream(), p) {
				t.Fatalf("the upstream saw %s", p)
			}
		}
	})

	t.Run("FileRuleBlocksWrites", func(t *testing.T) {
		r, err := e.c.Exec(ctx(t), Shell("echo bad > /workspace/locked/keep.txt; echo new > /workspace/locked/new.txt; cat /workspace/locked/keep.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Stdout) != "original\n" || !strings.Contains(string(r.Stderr), "Permission denied") {
			t.Fatalf("stdout %q stderr %q", r.Stdout, r.Stderr)
		}
		if b, _ := os.ReadFile(filepath.Join(e.work, "locked", "keep.txt")); string(b) != "original\n" {
			t.Fatalf("the host file is now %q", b)
		}
		if _, err := os.Stat(filepath.Join(e.work, "locked", "new.txt")); err == nil {
			t.Fatal("the blocked create reached the host")
		}
		e.event(t, func(m map[string]any) bool {
			f := sub(m, "file")
			return m["type"] == "file" && f["blocked"] == true && f["path"] == "/workspace/locked/new.txt"
		})
	})

	t.Run("WriteRewriteCallback", func(t *testing.T) {
		r, err := e.c.Exec(ctx(t), Shell("echo hello > /workspace/rewrite.txt && echo ok"))
		if err != nil || string(r.Stdout) != "ok\n" {
			t.Fatalf("%v %q %q", err, r.Stdout, r.Stderr)
		}
		if b, _ := os.ReadFile(filepath.Join(e.work, "rewrite.txt")); string(b) != "go:hello\n" {
			t.Fatalf("the host file is %q", b)
		}
		e.mu.Lock()
		fr := e.files[len(e.files)-1]
		e.mu.Unlock()
		if fr.Op != "write" || fr.Path != "/workspace/rewrite.txt" || string(fr.Data) != "hello\n" {
			t.Fatalf("asked %+v", fr)
		}
	})

	t.Run("LiveChangeAndInvalidRules", func(t *testing.T) {
		if _, err := e.c.SetHooks(ctx(t), &Hooks{Network: []NetworkRule{{Name: "x", SetHeaders: map[string]string{"Host": "evil"}}}}); err == nil {
			t.Fatal("a rule setting Host was accepted")
		}
		if _, err := e.c.SetHooks(ctx(t), &Hooks{Network: []NetworkRule{{Name: "all", Action: "block"}}}); err != nil {
			t.Fatal(err)
		}
		if out := e.wget(t, "/ok"); !strings.Contains(out, "403 Forbidden") {
			t.Fatalf("guest got: %s", out)
		}
		now, err := e.c.GetHooks(ctx(t))
		if err != nil || len(now["network"].([]any)) != 1 {
			t.Fatalf("%v %v", err, now)
		}
		if _, err := e.c.SetHooks(ctx(t), &Hooks{}); err != nil {
			t.Fatal(err)
		}
		if out := e.wget(t, "/ok"); !strings.Contains(out, "rc=0") {
			t.Fatalf("guest got: %s", out)
		}
	})
}
