// Command quickstart shows the matchlock Go SDK: two sandboxes from one client, exec,
// streaming, stdin, a file round trip and a cancelled command.
//
// From the repository root, after `make all fixtures`:
//
//	cd examples/go && MATCHLOCK_BIN=$PWD/../../build/matchlock go run ./quickstart $PWD/../../build/rootfs-busybox
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/matchlock/matchlock/sdk/go/matchlock"
)

func main() {
	image := "build/rootfs-busybox"
	if len(os.Args) > 1 {
		image = os.Args[1]
	}
	ctx := context.Background()
	client, err := matchlock.NewClient(matchlock.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close() // closes every sandbox still open

	sb, err := client.Create(ctx, matchlock.SandboxOptions{Image: image, MemoryMB: 256,
		Env: map[string]string{"GREETING": "hello"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created", sb.ID())

	// Run to completion: Shell goes through sh -c, Argv runs with no shell.
	r, err := sb.Exec(ctx, matchlock.Shell("echo $GREETING from $(uname -n); echo oops >&2; exit 3"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("exit=%d stdout=%q stderr=%q\n", r.ExitCode, r.Stdout, r.Stderr)

	// Stream output as it is produced.
	if _, err := sb.ExecStream(ctx, matchlock.Shell("for i in 1 2 3; do echo tick $i; sleep 0.2; done"),
		os.Stdout, os.Stderr); err != nil {
		log.Fatal(err)
	}

	// Feed stdin.
	p, err := sb.ExecPipe(ctx, matchlock.Argv{"sed", "s/^/guest says: /"}, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	p.Write([]byte("one\ntwo\n"))
	p.CloseStdin()
	if r, err = p.Wait(); err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(r.Stdout))

	// Files of any size travel in chunks.
	data := make([]byte, 8<<20)
	rand.Read(data)
	if err := sb.Files.Write(ctx, "/tmp/data/blob.bin", data, 0o644); err != nil {
		log.Fatal(err)
	}
	back, err := sb.Files.Read(ctx, "/tmp/data/blob.bin")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("round trip ok:", bytes.Equal(back, data))

	// A second sandbox on the same client, used at the same time.
	other, err := client.Launch(ctx, matchlock.New(image).WithHostname("other"))
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan string)
	go func() {
		r, err := other.Exec(ctx, matchlock.Argv{"hostname"})
		if err != nil {
			log.Fatal(err)
		}
		done <- string(r.Stdout)
	}()
	fmt.Print("second sandbox: ", <-done)
	other.Close(ctx)

	// A context deadline cancels the command in the guest.
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := sb.Exec(tctx, matchlock.Shell("sleep 60")); matchlock.IsCode(err, matchlock.CodeCancelled) {
		fmt.Println("cancelled:", err)
	} else {
		log.Fatalf("expected a cancellation, got %v", err)
	}
}
