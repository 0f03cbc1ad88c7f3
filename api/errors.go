package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/sibylhq/sibyl/command"
)

// httpStatus maps a protocol code to the HTTP status of docs/protocol.md §4.
var httpStatus = map[command.Code]int{
	command.CodeBadRequest:        http.StatusBadRequest,
	command.CodeUnauthorized:      http.StatusUnauthorized,
	command.CodeForbidden:         http.StatusForbidden,
	command.CodeNotFound:          http.StatusNotFound,
	command.CodeConflict:          http.StatusConflict,
	command.CodeTicketHeld:        http.StatusConflict,
	command.CodeTooLarge:          http.StatusRequestEntityTooLarge,
	command.CodeRateLimited:       http.StatusTooManyRequests,
	command.CodeInternal:          http.StatusInternalServerError,
	command.CodeQuorumUnavailable: http.StatusServiceUnavailable,
	command.CodeNoMain:            http.StatusServiceUnavailable,
	command.CodeUnavailable:       http.StatusServiceUnavailable,
	command.CodeTimeout:           http.StatusGatewayTimeout,
}

// wireError turns any backend error into the error object sent to clients. Only codes of
// the protocol go out (anything else becomes internal), and "retryable" always follows
// the code, whatever the backend set, so clients can rely on it.
func wireError(err error) *command.Error {
	var e *command.Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, context.DeadlineExceeded):
		return command.Errorf(command.CodeTimeout, "%v", err)
	case errors.Is(err, context.Canceled):
		return command.Errorf(command.CodeUnavailable, "request cancelled: %v", err)
	default:
		return command.Errorf(command.CodeInternal, "%v", err)
	}
	if _, known := httpStatus[e.Code]; !known {
		return command.Errorf(command.CodeInternal, "backend failed with unknown code %q: %s", e.Code, e.Message)
	}
	return &command.Error{Code: e.Code, Message: e.Message, Retryable: e.Code.Retryable(), RetryAfterMs: e.RetryAfterMs}
}

// statusOf is the HTTP status for an error object of wireError.
func statusOf(e *command.Error) int {
	if s, ok := httpStatus[e.Code]; ok {
		return s
	}
	return http.StatusInternalServerError
}
