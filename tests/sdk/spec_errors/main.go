// The Go SDK's side of tests/integration/test_spec_errors.sh: launch each bad spec named on the
// command line and print "CASE<TAB>MESSAGE" with the server's error message (the SDK must not
// judge the values itself, nor accept and ignore a field the server does not implement).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	sdk "github.com/matchlock/matchlock/sdk/go/matchlock"
)

func main() {
	image := os.Getenv("MATCHLOCK_TEST_IMAGE")
	cases := map[string]func() *sdk.Sandbox{
		"cpus-0":     func() *sdk.Sandbox { return sdk.New(image).WithCPUs(0) },
		"cpus-1000":  func() *sdk.Sandbox { return sdk.New(image).WithCPUs(1000) },
		"memory-10":  func() *sdk.Sandbox { return sdk.New(image).WithMemory(10) },
		"memory-1e9": func() *sdk.Sandbox { return sdk.New(image).WithMemory(1000000000) },
		"disk-size":  func() *sdk.Sandbox { return sdk.New(image).WithDiskSize(10) },
		"timeout-0":  func() *sdk.Sandbox { return sdk.New(image).WithTimeout(0) },
		"mount-missing": func() *sdk.Sandbox {
			return sdk.New(image).WithMount("/nonexistent-matchlock", "/w", "")
		},
		"mount-relative": func() *sdk.Sandbox { return sdk.New(image).WithMount("/tmp", "w", "") },
		"mount-proc":     func() *sdk.Sandbox { return sdk.New(image).WithMount("/tmp", "/proc", "") },
		"mount-mode":     func() *sdk.Sandbox { return sdk.New(image).WithMount("/tmp", "/w", "rx") },
	}
	c, err := sdk.NewClient(sdk.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, name := range os.Args[1:] {
		if name == "unknown-key" {
			err = c.Call(ctx, "create", map[string]any{"image": image, "no_such_field": 1}, nil)
		} else if mk, ok := cases[name]; ok {
			_, err = c.Launch(ctx, mk())
		} else {
			err = fmt.Errorf("no such case")
		}
		var re *sdk.RPCError
		if !errors.As(err, &re) || re.Code != sdk.CodeParams {
			fmt.Fprintf(os.Stderr, "%s: want an invalid-params error, got %v\n", name, err)
			os.Exit(1)
		}
		fmt.Printf("%s\t%s\n", name, re.Message)
	}
}
