// Command quickstart shows the matchlock Go SDK: exec, streaming and a file round trip.
//
// From the repository root, after `make all fixtures`:
//
//	cd examples/go && MATCHLOCK_BIN=$PWD/../../build/matchlock go run ./quickstart ../../build/rootfs-busybox
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"time"

	sdk "github.com/matchlock/matchlock/sdk/go"
)

func main() {
	image := "build/rootfs-busybox"
	if len(os.Args) > 1 {
		image = os.Args[1]
	}
	ctx := context.Background()
	client, err := sdk.NewClient(sdk.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	id, err := client.Launch(ctx, sdk.New(image).WithMemory(256).WithEnv("GREETING", "hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("launched", id)

	// Run to completion: Shell goes through sh -c, Argv runs with no shell.
	r, err := client.Exec(ctx, sdk.Shell("echo $GREETING from $(uname -n); echo oops >&2; exit 3"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("exit=%d stdout=%q stderr=%q in %d ms\n", r.ExitCode, r.Stdout, r.Stderr, r.DurationMS)

	// Stream output as it is produced.
	if _, err := client.ExecStream(ctx, sdk.Shell("for i in 1 2 3; do echo tick $i; sleep 0.2; done"),
		os.Stdout, os.Stderr); err != nil {
		log.Fatal(err)
	}

	// Feed stdin.
	p, err := client.ExecPipe(ctx, sdk.Argv{"sed", "s/^/guest says: /"}, nil, nil)
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
	if err := client.WriteFile(ctx, "/tmp/data/blob.bin", data, 0o644); err != nil {
		log.Fatal(err)
	}
	back, err := client.ReadFile(ctx, "/tmp/data/blob.bin")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("round trip ok:", bytes.Equal(back, data))

	// A context deadline cancels the command in the guest.
	tctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := client.Exec(tctx, sdk.Shell("sleep 60")); sdk.IsCode(err, sdk.CodeCancelled) {
		fmt.Println("cancelled:", err)
	}
}
