package matchlock

import (
	"errors"
	"fmt"
)

// JSON-RPC error codes of matchlock rpc: the table "Error codes" in spec/rpc.md (the Python and
// TypeScript SDKs use the same names; the tests compare ErrorCodes with the table).
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	CodeSandboxFailed  = -32000
	CodeExecFailed     = -32001
	CodeFileFailed     = -32002
	CodeCancelled      = -32003
)

// The names of the first version of this package.
const (
	CodeParse    = CodeParseError
	CodeInvalid  = CodeInvalidRequest
	CodeMethod   = CodeMethodNotFound
	CodeParams   = CodeInvalidParams
	CodeInternal = CodeInternalError
)

// ErrorCodes maps each code's name in spec/rpc.md's table to its value.
var ErrorCodes = map[string]int{
	"PARSE_ERROR":      CodeParseError,
	"INVALID_REQUEST":  CodeInvalidRequest,
	"METHOD_NOT_FOUND": CodeMethodNotFound,
	"INVALID_PARAMS":   CodeInvalidParams,
	"INTERNAL_ERROR":   CodeInternalError,
	"SANDBOX_FAILED":   CodeSandboxFailed,
	"EXEC_FAILED":      CodeExecFailed,
	"FILE_FAILED":      CodeFileFailed,
	"CANCELLED":        CodeCancelled,
}

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
