package job

import (
	"errors"
	"fmt"
)

// Code classifies an error for clients. The HTTP adapter maps each code to
// one status; nothing matches on error strings.
type Code string

const (
	CodeInvalid      Code = "invalid"      // 400
	CodeUnauthorized Code = "unauthorized" // 401
	CodeForbidden    Code = "forbidden"    // 403
	CodeNotFound     Code = "not_found"    // 404
	CodeConflict     Code = "conflict"     // 409
	CodeTooLarge     Code = "too_large"    // 413
	CodeTooMany      Code = "too_many"     // 429
	CodeUnavailable  Code = "unavailable"  // 503
	CodeBadGateway   Code = "bad_gateway"  // 502: a function failed or answered badly
	CodeTimeout      Code = "timeout"      // 504
	CodeInternal     Code = "internal"     // 500
)

// Error is an error with a Code and, for invalid input, the Field at fault.
type Error struct {
	Code    Code
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Message)
	}
	return e.Message
}

// Errorf returns an *Error with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a CodeInvalid error naming field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrNotFound is returned by lookups of unknown ids.
var ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none. A nil err has no code.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorField returns the field of the first *Error in err's chain.
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
