package controlapi

import "fmt"

// Code is the stable, machine-readable part of an error answer.
type Code string

// Every error code the control API answers with. Programs branch on these;
// the message beside them is for people and may change.
const (
	CodeInvalidRequest       Code = "invalid_request"
	CodeInvalidJSON          Code = "invalid_json"
	CodeRequestTooLarge      Code = "request_too_large"
	CodeUnauthorized         Code = "unauthorized"
	CodeTooManyAttempts      Code = "too_many_attempts" // too many wrong API keys from the address; see Retry-After
	CodeForbidden            Code = "forbidden"
	CodeNotFound             Code = "not_found"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeConnectionNotFound   Code = "connection_not_found"
	CodeConnectionDeleted    Code = "connection_deleted"
	CodeGatewayNotSubscribed Code = "gateway_not_subscribed"
	// CodeAckAhead: an acknowledgement of a revision its stream has not
	// delivered.
	CodeAckAhead Code = "ack_ahead_of_stream"
	// CodeTooManyStreams: the change stream limits are reached.
	CodeTooManyStreams Code = "too_many_streams"
	CodeAppNotFound    Code = "app_not_found"
	// CodePublicClient: a public app (token_endpoint_auth_method none) has
	// no client secret to rotate.
	CodePublicClient  Code = "public_client"
	CodeInternalError Code = "internal_error"
	// CodeStoreUnavailable: the store (a database) cannot be reached, or
	// the connection to it was lost during a commit; see the message.
	CodeStoreUnavailable Code = "store_unavailable"
)

// Error is the body of every error answer, and an error a handler returns:
// the control module writes it once, with its HTTP status.
type Error struct {
	// Status is the HTTP status the error is answered with; not in the body.
	Status  int    `json:"-"`
	Code    Code   `json:"error"`
	Message string `json:"message"`
	// Header holds headers that go with the answer (Allow on a 405,
	// WWW-Authenticate on a 401); not in the body.
	Header map[string]string `json:"-"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the message formatted as fmt.Sprintf does.
func Errorf(status int, code Code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}
