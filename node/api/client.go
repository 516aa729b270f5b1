package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultAddress is the API address of a node started with defaults.
const DefaultAddress = "127.0.0.1:7600"

// Client talks to one node's HTTP API. Any node answers; requests for
// another node travel there over node streams (see On).
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
	// on names the node that should serve requests; "" = the node at base.
	on string
}

// NewClient returns a client for the node at addr ("host:port" or a URL).
func NewClient(addr, token string) (*Client, error) {
	if addr == "" {
		addr = DefaultAddress
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("node address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("node address %q: scheme must be http or https", addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("node address %q: no host", addr)
	}
	return &Client{
		base:  u,
		token: token,
		http:  &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}},
	}, nil
}

// On returns a copy of c whose requests are served by the named node: the
// node at c's address forwards them over authenticated node streams.
func (c *Client) On(node string) *Client {
	cp := *c
	cp.on = node
	return &cp
}

// Address returns the node address the client talks to.
func (c *Client) Address() string { return c.base.Host }

// Health calls GET /v1/health.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var out Health
	return &out, c.get(ctx, "/v1/health", nil, &out)
}

// Self calls GET /v1/self.
func (c *Client) Self(ctx context.Context) (*Self, error) {
	var out Self
	return &out, c.get(ctx, "/v1/self", nil, &out)
}

// Members calls GET /v1/members.
func (c *Client) Members(ctx context.Context, q MembersQuery) (*Members, error) {
	v := url.Values{}
	if q.IDC != "" {
		v.Set("idc", q.IDC)
	}
	if q.Status != "" {
		v.Set("status", q.Status)
	}
	if q.Selector != "" {
		v.Set("select", q.Selector)
	}
	var out Members
	return &out, c.get(ctx, "/v1/members", v, &out)
}

// Ping asks the node to ping the named member over node streams.
func (c *Client) Ping(ctx context.Context, name string) (*Ping, error) {
	var out Ping
	return &out, c.get(ctx, "/v1/members/"+url.PathEscape(name)+"/ping", nil, &out)
}

// RequestError is a non-2xx answer from the API.
type RequestError struct {
	Status int
	Err    Error
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("%s (%s, HTTP %d)", e.Err.Message, e.Err.Code, e.Status)
}

// ConnectError means the node could not be reached at all.
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("cannot reach herd node at %s: %v (is the agent running? set --node or HERD_NODE)", e.Addr, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// maxResponse bounds what the client reads from one answer.
const maxResponse = 64 << 20

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	if q == nil {
		q = url.Values{}
	}
	if c.on != "" {
		q.Set("on", c.on)
	}
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var nerr net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
			return fmt.Errorf("herd node at %s did not answer in time: %w", c.base.Host, err)
		}
		return &ConnectError{Addr: c.base.Host, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("reading answer from %s: %w", c.base.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error.Message == "" {
			eb.Error = Error{Code: CodeInternal, Message: strings.TrimSpace(string(body))}
		}
		return &RequestError{Status: resp.StatusCode, Err: eb.Error}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding answer from %s: %w", c.base.Host, err)
	}
	return nil
}

// DefaultTimeout is the CLI's default per-request timeout.
const DefaultTimeout = 30 * time.Second
