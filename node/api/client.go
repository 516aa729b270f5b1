package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
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

// maxResponse bounds what the client reads from one answer. The largest
// answers are full run views: 1,000 hosts with 64 KiB of head and tail
// each are ~85 MiB once base64-encoded.
const maxResponse = 256 << 20

func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	_, err := c.do(ctx, http.MethodGet, path, q, nil, out)
	return err
}

// do sends one request and decodes a 2xx JSON answer into out (if not nil).
// It returns the answer's headers.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, out any) (http.Header, error) {
	if q == nil {
		q = url.Values{}
	}
	if c.on != "" {
		q.Set("on", c.on)
	}
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var nerr net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
			return nil, fmt.Errorf("herd node at %s did not answer in time: %w", c.base.Host, err)
		}
		return nil, &ConnectError{Addr: c.base.Host, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("reading answer from %s: %w", c.base.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error.Message == "" {
			eb.Error = Error{Code: CodeInternal, Message: strings.TrimSpace(string(data))}
		}
		return resp.Header, &RequestError{Status: resp.StatusCode, Err: eb.Error}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.Header, fmt.Errorf("decoding answer from %s: %w", c.base.Host, err)
		}
	}
	return resp.Header, nil
}

// ControlStatus calls GET /v1/control/status for idc ("" = the node's own).
func (c *Client) ControlStatus(ctx context.Context, idc string) (*ControlStatus, error) {
	v := url.Values{}
	if idc != "" {
		v.Set("idc", idc)
	}
	var out ControlStatus
	return &out, c.get(ctx, "/v1/control/status", v, &out)
}

func kvValues(q KVQuery) url.Values {
	v := url.Values{}
	if q.Scope != "" {
		v.Set("scope", q.Scope)
	}
	if q.Consistent {
		v.Set("consistent", "")
	}
	if q.Stale {
		v.Set("stale", "")
	}
	if q.Index > 0 {
		v.Set("index", strconv.FormatUint(q.Index, 10))
	}
	if q.Wait > 0 {
		v.Set("wait", q.Wait.String())
	}
	return v
}

func kvPath(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/v1/kv/" + strings.Join(parts, "/")
}

// KVGet reads one key. A missing key is a *RequestError with CodeNotFound.
func (c *Client) KVGet(ctx context.Context, key string, q KVQuery) (*KVEntry, error) {
	var out KVEntry
	return &out, c.get(ctx, kvPath(key), kvValues(q), &out)
}

// KVList lists keys under prefix.
func (c *Client) KVList(ctx context.Context, prefix string, q KVQuery) (*KVList, error) {
	v := kvValues(q)
	if prefix != "" {
		v.Set("prefix", prefix)
	}
	var out KVList
	return &out, c.get(ctx, "/v1/kv", v, &out)
}

// KVPut writes key. cas nil writes unconditionally; 0 creates only; N
// updates only version N (else a *RequestError with CodeCASConflict).
func (c *Client) KVPut(ctx context.Context, key string, value []byte, scope string, cas *uint64) (*KVEntry, error) {
	v := kvValues(KVQuery{Scope: scope})
	if cas != nil {
		v.Set("cas", strconv.FormatUint(*cas, 10))
	}
	if value == nil {
		value = []byte{}
	}
	var out KVEntry
	_, err := c.do(ctx, http.MethodPut, kvPath(key), v, value, &out)
	return &out, err
}

// KVDelete removes key, optionally only at version cas.
func (c *Client) KVDelete(ctx context.Context, key, scope string, cas *uint64) error {
	v := kvValues(KVQuery{Scope: scope})
	if cas != nil {
		v.Set("cas", strconv.FormatUint(*cas, 10))
	}
	_, err := c.do(ctx, http.MethodDelete, kvPath(key), v, nil, nil)
	return err
}

// DefaultTimeout is the CLI's default per-request timeout.
const DefaultTimeout = 30 * time.Second
