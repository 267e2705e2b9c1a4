package sdk

import (
	"errors"
	"fmt"
)

// JSON-RPC error codes used by matchlock rpc (see spec/rpc.md).
const (
	CodeParse         = -32700
	CodeInvalid       = -32600
	CodeMethod        = -32601
	CodeParams        = -32602
	CodeInternal      = -32603
	CodeSandboxFailed = -32000
	CodeExecFailed    = -32001
	CodeFileFailed    = -32002
	CodeCancelled     = -32003
)

// ErrClosed is returned (wrapped, with the reason) once matchlock rpc has exited or the client
// was closed.
var ErrClosed = errors.New("matchlock rpc is not running")

// RPCError is an error answer from the server. When a request was cancelled because its context
// ended, Unwrap returns the context's error, so errors.Is(err, context.Canceled) holds too.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Method  string `json:"-"`
	cause   error
}

func (e *RPCError) Error() string {
	if e.Method != "" {
		return fmt.Sprintf("%s: %s (code %d)", e.Method, e.Message, e.Code)
	}
	return fmt.Sprintf("%s (code %d)", e.Message, e.Code)
}

// Unwrap returns the context error that caused a cancellation, if any.
func (e *RPCError) Unwrap() error { return e.cause }

// IsCode reports whether err is an RPCError with this code.
func IsCode(err error, code int) bool {
	var re *RPCError
	return errors.As(err, &re) && re.Code == code
}
