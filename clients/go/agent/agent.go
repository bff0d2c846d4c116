// Package agent is a thin client of pidfd-agent: the generated AgentServiceClient (package
// agentv1, from proto/ by `make proto`) on a connection dialled over the unix socket or over TCP
// with TLS, whose errors are *Error values carrying the agent's google.rpc.ErrorInfo reason.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	agentv1 "github.com/pidfd-agent/pidfd-agent/clients/go/pidfd/agent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// DefaultAddress is where the agent serves on a node by default.
const DefaultAddress = "unix:///run/pidfd-agent/agent.sock"

// Client is one connection to one agent; the methods are the service's.
type Client struct {
	agentv1.AgentServiceClient
	conn *grpc.ClientConn
	// Closed by Close: a call waiting out a retry backoff ends then (see Error.ClientClosed).
	closing   chan struct{}
	closeOnce sync.Once
}

// Dial connects to unix:///PATH (plaintext: the socket's permissions and the kernel's peer
// credentials are the authentication) or to IP:PORT with TLS, which the agent requires on TCP
// but loopback (tlsConfig carries the client certificate; see TLSConfig; nil means plaintext,
// for a loopback address only). extra is appended to the defaults.
// Like grpc.Dial, it does not wait for the connection: the first call does.
func Dial(address string, tlsConfig *tls.Config, extra ...grpc.DialOption) (*Client, error) {
	closing := make(chan struct{})
	opts := []grpc.DialOption{
		// The agent is node-local: a restart or handover lasts about 0.1 s, grpc's first backoff 1 s.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 20 * time.Second,
		}),
		// A PING every 30 s while calls are open keeps a quiet Watch or ReadOutput stream alive
		// through proxies and load balancers that drop idle connections (often after 60 s), and
		// finds a dead connection 10 s later.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithChainUnaryInterceptor(retrying(closing)),
		grpc.WithChainStreamInterceptor(streamErrors),
	}
	target := address
	if path := strings.TrimPrefix(address, "unix://"); path != address {
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("agent address %q: expected unix:///ABSOLUTE/PATH", address)
		}
		target = "passthrough:///localhost"
		opts = append(opts, grpc.WithInsecure(), grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}))
	} else if tlsConfig != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	} else if isLoopback(address) {
		opts = append(opts, grpc.WithInsecure()) // the agent serves plaintext TCP on loopback only
	} else {
		return nil, fmt.Errorf("agent address %q: TCP needs TLS with a client certificate (see TLSConfig)", address)
	}
	conn, err := grpc.Dial(target, append(opts, extra...)...)
	if err != nil {
		return nil, err
	}
	return &Client{AgentServiceClient: agentv1.NewAgentServiceClient(conn), conn: conn, closing: closing}, nil
}

func isLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	ip := net.ParseIP(host)
	return err == nil && ip != nil && ip.IsLoopback()
}

// TLSConfig presents this client's certificate and key (PEM files) and verifies the agent
// against caFile ("" for the system roots).
func TLSConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", caFile)
		}
	}
	return cfg, nil
}

// Close closes the connection. A call waiting for its reply then returns at once with UNAVAILABLE
// (no reply, the outcome is unknown), and a Spawn or SpawnBatch waiting out a retry backoff with
// its last failure; both are marked ClientClosed: a Spawn may have started, and its RequestID is
// how to find out (resend it on a new client).
func (c *Client) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	return c.conn.Close()
}

// MaxListPageSize is the most processes a List page holds: a larger page_size is taken as this.
const MaxListPageSize = 1000

// PageTokenExpired is the reason (ABORTED) of a page token issued before the agent restarted or
// handed over: list again from the first page.
const PageTokenExpired = "PAGE_TOKEN_EXPIRED"

// ListAll lists every process req's filters match, a page at a time (req.PageSize, else
// MaxListPageSize), as one ListResponse: the processes of all pages, and the first page's
// sequence, after which a Watch misses no change, those made while paging included. req is not
// changed. A page token dies with the agent that issued it: when the agent restarts or hands
// over between two pages (ABORTED / PageTokenExpired), the listing starts again from the first
// page, once; a second time, that error is returned.
func (c *Client) ListAll(ctx context.Context, req *agentv1.ListRequest, opts ...grpc.CallOption) (*agentv1.ListResponse, error) {
	page := &agentv1.ListRequest{}
	if req != nil {
		page = proto.Clone(req).(*agentv1.ListRequest)
	}
	if page.PageSize == 0 {
		page.PageSize = MaxListPageSize
	}
	all, err := c.listPages(ctx, page, opts)
	if Reason(err) == PageTokenExpired {
		return c.listPages(ctx, page, opts)
	}
	return all, err
}

// listPages lists from the first page on; it changes page's token.
func (c *Client) listPages(ctx context.Context, page *agentv1.ListRequest, opts []grpc.CallOption) (*agentv1.ListResponse, error) {
	page.PageToken = ""
	all, err := c.List(ctx, page, opts...)
	if err != nil {
		return nil, err
	}
	for token := all.GetNextPageToken(); token != ""; {
		page.PageToken = token
		next, err := c.List(ctx, page, opts...)
		if err != nil {
			return nil, err
		}
		// The agent never sends an empty page that goes on: such a server would have this loop forever.
		if len(next.GetProcesses()) == 0 && next.GetNextPageToken() != "" {
			return nil, fmt.Errorf("List: an empty page with a next_page_token")
		}
		all.Processes = append(all.Processes, next.GetProcesses()...)
		token = next.GetNextPageToken()
	}
	all.NextPageToken = ""
	return all, nil
}

// DescribeExit reads Exit.status, a oneof (GetCode() is 0 when the process was signalled):
// "exited with code 3", "killed by signal SIGTERM", or "status lost".
func DescribeExit(exit *agentv1.Exit) string {
	switch s := exit.GetStatus().(type) {
	case *agentv1.Exit_Code:
		return fmt.Sprintf("exited with code %d", s.Code)
	case *agentv1.Exit_Signal:
		if name := exit.GetSignalName(); name != "" {
			return "killed by signal " + name
		}
		return fmt.Sprintf("killed by signal %d", s.Signal)
	default:
		return "status lost"
	}
}
