package agent

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed call: the gRPC code, the agent's message, and its google.rpc.ErrorInfo
// reason (the errno name such as ENOENT, or a domain reason such as PROCESS_EXITED; "" when the
// agent sent none, as for a transport failure) with what it names in Metadata (field, path,
// syscall, handle). status.FromError and status.Code still work.
type Error struct {
	Code     codes.Code
	Message  string
	Reason   string
	Metadata map[string]string
	// Method is the gRPC method that failed: "Spawn", "Get", ...
	Method string
	// RequestID is the request_id a Spawn or Adopt was sent with: the caller's, or the one the
	// client made up. Resend the request with it to retry safely.
	RequestID string
	// RequestIDs are the request_ids of a SpawnBatch's items, in order.
	RequestIDs []string
	// ClientClosed: Close ended the call, so it may have run on the agent. Either it would have
	// been retried, but Close came while it waited out a backoff, and the error is its last
	// attempt's (UNAVAILABLE); or Close came before its reply, and the error is UNAVAILABLE with
	// no reason, as for a connection lost then (IsRetryable tells whether resending it is safe).
	ClientClosed bool
	inFlight     bool // ClientClosed before the reply
	status       *status.Status
}

func (e *Error) Error() string {
	switch {
	case e.inFlight:
		return CodeName(e.Code) + ": " + e.Message + " (the client was closed with the call in flight)"
	case e.ClientClosed:
		return CodeName(e.Code) + ": " + e.Message + " (the client was closed during the retry backoff)"
	}
	return CodeName(e.Code) + ": " + e.Message
}

// closedInFlight is the error of a call whose connection Close ended before the reply: grpc
// says CANCELED or UNAVAILABLE "transport is closing", which hides that the call may have run.
// Errors the agent sent (they carry a reason) are left as they are: their outcome is known.
func closedInFlight(err error) error {
	var e *Error
	if !errors.As(err, &e) || e.Reason != "" || (e.Code != codes.Canceled && e.Code != codes.Unavailable) {
		return err
	}
	s := status.New(codes.Unavailable, "no reply, the outcome is unknown")
	return &Error{Code: s.Code(), Message: s.Message(), Metadata: map[string]string{}, ClientClosed: true, inFlight: true, status: s}
}

// GRPCStatus lets status.FromError see the original status.
func (e *Error) GRPCStatus() *status.Status {
	return e.status
}

// Reason is the agent's ErrorInfo reason of err, "" when it carries none.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

var wordStart = regexp.MustCompile(`([a-z])([A-Z])`)

// CodeName is the canonical name of a gRPC code, as other languages print it: FAILED_PRECONDITION.
func CodeName(c codes.Code) string {
	return strings.ToUpper(wordStart.ReplaceAllString(c.String(), "${1}_${2}"))
}

// asError turns a gRPC status error into *Error; other errors (io.EOF, context's) pass through.
func asError(err error) error {
	if err == nil || err == io.EOF || errors.Is(err, context.Canceled) {
		return err
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: s.Code(), Message: s.Message(), Metadata: map[string]string{}, status: s}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			e.Reason = info.GetReason()
			for k, v := range info.GetMetadata() {
				e.Metadata[k] = v
			}
		}
	}
	return e
}

func streamErrors(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, asError(err)
	}
	return errorStream{s, method[strings.LastIndex(method, "/")+1:]}, nil
}

type errorStream struct {
	grpc.ClientStream
	method string
}

func (s errorStream) RecvMsg(m interface{}) error {
	err := asError(s.ClientStream.RecvMsg(m))
	var e *Error
	if errors.As(err, &e) {
		e.Method = s.method
	}
	return err
}
