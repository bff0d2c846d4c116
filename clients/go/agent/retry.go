package agent

// Which failed calls are safe to send again, and how the client retries them: bounded in
// attempts and in time, with jittered exponential backoff, never past the context's deadline.
//
// UNAVAILABLE alone says nothing about what ran. With reason HANDOVER the agent refused the call
// at its gate, so nothing of it ran (except a Stop or WriteStdin already in flight, which the
// handover ends after it acted). With no reason the transport failed: the request may have been
// carried out and only the reply lost, so only a call that changes nothing, or one the agent
// recognises by its request_id, may be sent again.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	mathrand "math/rand"
	"strings"
	"time"

	agentv1 "github.com/pidfd-agent/pidfd-agent/clients/go/pidfd/agent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// RetryPolicy bounds the retries of a call. Attempts counts the first (1: no retry). The backoff
// before retry n is InitialBackoff·2^(n-1), at most MaxBackoff, jittered down by up to half; no
// retry starts later than Window after the first failure.
type RetryPolicy struct {
	Attempts       int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Window         time.Duration
}

// DefaultRetry is the policy of Spawn and SpawnBatch unless a call names its own: about 3 s of
// backoff over 6 attempts. An agent restart or handover on the node takes 0.1-1 s, a container
// restart a few seconds; an agent down for longer is the caller's to handle.
var DefaultRetry = RetryPolicy{Attempts: 6, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, Window: 10 * time.Second}

// NoRetry sends a call once.
var NoRetry = RetryPolicy{Attempts: 1}

// WithRetry retries the call on UNAVAILABLE where IsRetryable allows, under policy p. Without it,
// Spawn and SpawnBatch use DefaultRetry and other calls are sent once. In
// grpc.WithDefaultCallOptions it applies to every call on the connection.
func WithRetry(p RetryPolicy) grpc.CallOption {
	return retryOption{policy: p}
}

// WithoutRequestID sends a SpawnRequest (or SpawnBatch items) without request_id as it is. By
// default the client gives each a random one, which makes a retry safe: the agent replays the
// first spawn, never starts a second.
func WithoutRequestID() grpc.CallOption {
	return noRequestID{}
}

type retryOption struct {
	grpc.EmptyCallOption
	policy RetryPolicy
}

type noRequestID struct{ grpc.EmptyCallOption }

// NewRequestID is a request id as the client makes them up: a random (version 4) UUID.
func NewRequestID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // the kernel's CSPRNG does not fail
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

var (
	reads = map[string]bool{"Get": true, "List": true, "ListThreads": true}
	keyed = map[string]bool{"Spawn": true, "SpawnBatch": true, "Adopt": true}
	// A Wait whose reply was lost may have released a release_on_exit process's handle, and its
	// exit with it: resent, it would get UNKNOWN_HANDLE in place of the exit.
	refusable = map[string]bool{"Wait": true, "Signal": true, "Release": true, "CloseStdin": true, "ResizeTerminal": true}
)

// IsRetryable says whether sending the failed call again can neither do twice what it did once
// nor be answered for what another call did. True only for UNAVAILABLE: reads (Get, List,
// ListThreads) always; Spawn,
// SpawnBatch and Adopt when every request carried a request_id (the agent replays, or answers
// OUTCOME_UNKNOWN or REQUEST_RELEASED, never starts twice) or the agent refused them (HANDOVER); Wait, Signal, Release,
// CloseStdin and ResizeTerminal only when refused. Never Stop or WriteStdin, nor a stream
// (resume those by offset or cursor instead). err must come from this package's Client.
func IsRetryable(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.Unavailable {
		return false
	}
	refused := e.Reason == "HANDOVER"
	transport := e.Reason == ""
	switch {
	case reads[e.Method]:
		return refused || transport
	case keyed[e.Method]:
		return refused || (transport && allKeyed(e))
	case refusable[e.Method]:
		return refused
	}
	return false
}

func allKeyed(e *Error) bool {
	ids := e.RequestIDs
	if e.Method != "SpawnBatch" {
		ids = []string{e.RequestID}
	}
	for _, id := range ids {
		if id == "" {
			return false
		}
	}
	return len(ids) > 0
}

// withRequestIDs is the request to send: a copy with a new request_id where the caller gave none
// (in each SpawnBatch item). The caller's message is never changed, so one reused as a template,
// or shared between goroutines, still starts a process each time.
func withRequestIDs(req interface{}) interface{} {
	switch r := req.(type) {
	case *agentv1.SpawnRequest:
		// A nil request goes as it is: grpc sends it empty, and the agent answers INVALID_ARGUMENT.
		if r != nil && r.GetRequestId() == "" {
			c := proto.Clone(r).(*agentv1.SpawnRequest)
			c.RequestId = NewRequestID()
			return c
		}
	case *agentv1.SpawnBatchRequest:
		var c *agentv1.SpawnBatchRequest
		for i, item := range r.GetRequests() {
			if item == nil || item.GetRequestId() != "" {
				continue
			}
			if c == nil {
				c = proto.Clone(r).(*agentv1.SpawnBatchRequest)
			}
			c.Requests[i].RequestId = NewRequestID()
		}
		if c != nil {
			return c
		}
	}
	return req
}

// label sets what e carries of the call: its method and the request ids it was sent with.
func label(e *Error, method string, req interface{}) {
	e.Method = method
	switch r := req.(type) {
	case *agentv1.SpawnRequest:
		e.RequestID = r.GetRequestId()
	case *agentv1.AdoptRequest:
		e.RequestID = r.GetRequestId()
	case *agentv1.SpawnBatchRequest:
		for _, item := range r.GetRequests() {
			e.RequestIDs = append(e.RequestIDs, item.GetRequestId())
		}
	}
}

// retrying is the connection's unary interceptor: it gives Spawn and SpawnBatch requests their
// request ids, retries under the call's policy until closing is closed (Client.Close), and turns
// errors into *Error labelled with the call.
func retrying(closing <-chan struct{}) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, fullMethod string, req, reply interface{}, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		method := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
		policy, autoID := callPolicy(method, opts)
		if autoID {
			req = withRequestIDs(req)
		}
		s := schedule{policy: policy, attempt: 1, closing: closing}
		for {
			// A call made after Close never left: grpc's CANCELED says so truly.
			sentOpen := !isClosed(closing)
			err := asError(invoker(ctx, fullMethod, req, reply, cc, opts...))
			if err != nil && sentOpen && isClosed(closing) && ctx.Err() == nil {
				err = closedInFlight(err)
			}
			var e *Error
			if errors.As(err, &e) {
				label(e, method, req)
			}
			if err == nil {
				return nil
			}
			if e != nil && e.inFlight {
				return err // no attempt on a closed connection
			}
			switch s.next(ctx, err) {
			case retry:
				continue
			case closed:
				// Not the attempt a closed connection would fail with (CANCELED): the last
				// failure, which says what the caller needs (may it have run, under which id).
				e.ClientClosed = true
			}
			return err
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// schedule holds the retries of one call.
type schedule struct {
	policy       RetryPolicy
	attempt      int
	firstFailure time.Time
	closing      <-chan struct{}
}

type verdict int

const (
	giveUp verdict = iota
	retry
	closed // the client was closed: no more attempts
)

// next waits out the backoff before the next attempt, or says why there is none.
func (s *schedule) next(ctx context.Context, err error) verdict {
	if !IsRetryable(err) {
		return giveUp
	}
	now := time.Now()
	if s.firstFailure.IsZero() {
		s.firstFailure = now
	}
	full := math.Min(float64(s.policy.MaxBackoff), float64(s.policy.InitialBackoff)*math.Pow(2, float64(s.attempt-1)))
	delay := time.Duration(full * (0.5 + mathrand.Float64()/2))
	late := now.Add(delay).Sub(s.firstFailure) > s.policy.Window
	if deadline, ok := ctx.Deadline(); ok && !now.Add(delay).Before(deadline) {
		late = true
	}
	if s.attempt >= s.policy.Attempts || late {
		return giveUp
	}
	s.attempt++
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return giveUp
	case <-s.closing:
		return closed
	}
	// Both ready: select chose at random, and the attempt would go to a closed connection.
	select {
	case <-s.closing:
		return closed
	default:
		return retry
	}
}

// callPolicy is the call's own policy (the last WithRetry), else the method's default; and
// whether it asked for no request id.
func callPolicy(method string, opts []grpc.CallOption) (p RetryPolicy, autoID bool) {
	p, autoID = NoRetry, true
	if method == "Spawn" || method == "SpawnBatch" {
		p = DefaultRetry
	}
	for _, o := range opts {
		switch o := o.(type) {
		case retryOption:
			p = o.policy
		case noRequestID:
			autoID = false
		}
	}
	return p, autoID
}
