package command

import (
	"errors"
	"fmt"
)

// Code is an error code of the public protocol (docs/protocol.md §2).
type Code string

const (
	CodeBadRequest        Code = "bad_request"
	CodeUnauthorized      Code = "unauthorized"
	CodeForbidden         Code = "forbidden"
	CodeNotFound          Code = "not_found"
	CodeConflict          Code = "conflict"
	CodeTicketHeld        Code = "ticket_held"
	CodeTooLarge          Code = "too_large"
	CodeRateLimited       Code = "rate_limited"
	CodeQuorumUnavailable Code = "quorum_unavailable"
	CodeNoMain            Code = "no_main"
	CodeTimeout           Code = "timeout"
	CodeUnavailable       Code = "unavailable"
	CodeInternal          Code = "internal"
)

// Retryable reports whether a request that failed with c may be sent again.
// For writes, a retryable code means the outcome is unknown: retry with the same key.
func (c Code) Retryable() bool {
	switch c {
	case CodeQuorumUnavailable, CodeNoMain, CodeTimeout, CodeUnavailable:
		return true
	}
	return false
}

// OutcomeUnknown reports whether a write that failed with c may still have taken effect.
func (c Code) OutcomeUnknown() bool {
	switch c {
	case CodeTimeout, CodeQuorumUnavailable, CodeNoMain, CodeUnavailable, CodeInternal:
		return true
	}
	return false
}

// Error is a failure with a protocol code. It is the "error" object on the wire.
type Error struct {
	Code      Code   `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
	// RetryAfterMs: for rate_limited, how long to wait before the request can succeed.
	RetryAfterMs int64 `json:"retryAfterMs,omitempty"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf makes an *Error with code c.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...), Retryable: c.Retryable()}
}

// AsError returns err as an *Error; errors without a code become CodeInternal.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Errorf(CodeInternal, "%v", err)
}

// CodeOf returns the protocol code of err ("" for nil).
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	return AsError(err).Code
}
