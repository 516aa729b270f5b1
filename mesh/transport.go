package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// transport is memberlist's NetTransport for one bind address, but for
// how it reads packets: NetTransport reads each UDP packet into a fresh
// 64 KiB buffer and hands on a slice of it, so every gossip packet (at
// most UDPBufferSize, 1,400 bytes) costs 64 KiB of allocation, zeroed, and
// pins it while the packet waits in memberlist's queues. That was half of
// what an idle pool allocated. transport reads into one reused buffer and
// hands on a copy of the packet's own size.
type transport struct {
	tcp      *net.TCPListener
	udp      *net.UDPConn
	bindIP   net.IP
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	log      *slog.Logger
	closed   atomic.Bool
	wg       sync.WaitGroup
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

const (
	// maxPacket is the largest UDP datagram.
	maxPacket = 65536
	// udpRecvBuf is the socket receive buffer asked for, as NetTransport
	// does: bursts of gossip must not overflow the kernel's queue.
	udpRecvBuf = 2 * 1024 * 1024
)

// newTransport listens for gossip on bindAddr:port, TCP and UDP on the
// same port; with port 0 the kernel picks one, retried a few times since
// the UDP side may find it taken.
func newTransport(bindAddr string, port int, log *slog.Logger) (*transport, error) {
	ip := net.ParseIP(bindAddr)
	if ip == nil {
		return nil, fmt.Errorf("bind address %q is not an IP address", bindAddr)
	}
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var t *transport
		if t, err = listen(ip, port, log); err == nil {
			return t, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, err
}

func listen(ip net.IP, port int, log *slog.Logger) (*transport, error) {
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: tcp.Addr().(*net.TCPAddr).Port})
	if err != nil {
		_ = tcp.Close()
		return nil, err
	}
	for size := udpRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &transport{
		tcp: tcp, udp: udp, bindIP: ip,
		packetCh: make(chan *memberlist.Packet),
		streamCh: make(chan net.Conn),
		log:      log,
	}
	t.wg.Add(2)
	go t.acceptStreams()
	go t.readPackets()
	return t, nil
}

// port is the port the transport listens on.
func (t *transport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is NetTransport's: the given address, else a private
// IP when bound to every interface, else the bound IP; the bound port
// unless an address was given.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip != "" {
		addr := net.ParseIP(ip)
		if addr == nil {
			return nil, 0, fmt.Errorf("failed to parse advertise address %q", ip)
		}
		if ip4 := addr.To4(); ip4 != nil {
			addr = ip4
		}
		return addr, port, nil
	}
	addr := t.bindIP
	if addr.IsUnspecified() {
		private, err := sockaddr.GetPrivateIP()
		if err != nil {
			return nil, 0, fmt.Errorf("failed to get interface addresses: %w", err)
		}
		if private == "" {
			return nil, 0, errors.New("no private IP address found, and explicit IP not provided")
		}
		if addr = net.ParseIP(private); addr == nil {
			return nil, 0, fmt.Errorf("failed to parse advertise address %q", private)
		}
	}
	if ip4 := addr.To4(); ip4 != nil {
		addr = ip4
	}
	return addr, t.port(), nil
}

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	to, err := net.ResolveUDPAddr("udp", a.Addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, to)
	return time.Now(), err
}

func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", a.Addr)
}

func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

func (t *transport) Shutdown() error {
	t.closed.Store(true)
	_ = t.tcp.Close()
	_ = t.udp.Close()
	t.wg.Wait()
	return nil
}

// acceptStreams hands accepted connections to memberlist, backing off
// after errors as NetTransport does.
func (t *transport) acceptStreams() {
	defer t.wg.Done()
	const baseDelay, maxDelay = 5 * time.Millisecond, time.Second
	var delay time.Duration
	for {
		conn, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.closed.Load() {
				return
			}
			delay = min(max(2*delay, baseDelay), maxDelay)
			t.log.Error("accepting a gossip connection", "err", err)
			time.Sleep(delay) // an accept error loop must not spin
			continue
		}
		delay = 0
		t.streamCh <- conn
	}
}

// readPackets reads each datagram into one buffer and hands memberlist a
// copy of its own size.
func (t *transport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, from, err := t.udp.ReadFrom(buf)
		ts := time.Now()
		if err != nil {
			if t.closed.Load() {
				return
			}
			t.log.Error("reading a gossip packet", "err", err)
			continue
		}
		if n < 1 {
			continue // memberlist's messages are at least a type byte
		}
		t.packetCh <- &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: from, Timestamp: ts}
	}
}
