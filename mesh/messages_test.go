package mesh

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMessageRoundTrip(t *testing.T) {
	health := Health{Load1: 0.5, CPUPercent: 12.25, MemTotal: 1 << 34, HostUptime: time.Hour, Version: "v", Collected: time.Unix(1700000000, 0).UTC()}
	tests := []struct {
		t messageType
		v any
	}{
		{msgNodeState, &nodeStateMsg{Name: "n1", Version: 7, Labels: map[string]string{"role": "web"}, Health: health, Leaving: true}},
		{msgUserEvent, &userEventMsg{LTime: 3, Name: "deploy", Payload: []byte{0, 1, 2}, Origin: "n2"}},
		{msgPushPull, &pushPullMsg{EventLTime: 9, States: []nodeStateMsg{{Name: "n1", Version: 1, Health: health}}}},
	}
	for _, tc := range tests {
		b, err := encodeMessage(tc.t, tc.v)
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != byte(tc.t) {
			t.Errorf("%s: type byte %d", tc.t, b[0])
		}
		gotT, got, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.t, err)
		}
		if gotT != tc.t || !reflect.DeepEqual(got, tc.v) {
			t.Errorf("%s: round trip = %+v, want %+v", tc.t, got, tc.v)
		}
	}
}

func TestDecodeMessageErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "empty message"},
		{"unknown type", []byte{200, '{', '}'}, "unknown mesh message type 200"},
		{"zero type", []byte{0}, "unknown"},
		{"bad json", []byte{byte(msgNodeState), '{'}, "decode node-state"},
		{"trailing", []byte("\x02{\"name\":\"x\"} x"), "decode user-event"},
		{"state without name", []byte("\x01{\"ver\":1}"), "without a node name"},
		{"state version 0", []byte("\x01{\"name\":\"n\"}"), "version 0"},
		{"state bad label", []byte("\x01{\"name\":\"n\",\"ver\":1,\"labels\":{\"idc\":\"x\"}}"), "reserved"},
		{"event without name", []byte("\x02{\"ltime\":1}"), "without a name"},
		{"wrong field type", []byte("\x02{\"name\":5}"), "decode user-event"},
		{"null body", []byte("\x02null"), "without a name"},
	}
	for _, tc := range tests {
		_, _, err := decodeMessage(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: decodeMessage = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	if _, _, err := decodeMessage([]byte{99}); !errors.Is(err, errUnknownMessage) {
		t.Errorf("unknown type error %v is not errUnknownMessage", err)
	}
}

// TestBroadcastSizeBudget checks that our largest messages fit the space
// memberlist leaves in a packet, with the longest label the config allows.
func TestBroadcastSizeBudget(t *testing.T) {
	const udpBuffer = 1400 // memberlist's default UDPBufferSize
	label := strings.Repeat("c", 64) + "/" + strings.Repeat("i", 64)
	overhead := 2 + (2 + len(label)) + 29 + 2 + 1 // compound header, label, encryption, entry, user-msg byte
	if maxBroadcastSize > udpBuffer-overhead {
		t.Errorf("maxBroadcastSize %d exceeds the %d bytes left in a packet", maxBroadcastSize, udpBuffer-overhead)
	}
	ev := &userEventMsg{LTime: 1<<63 - 1, Name: "n", Payload: make([]byte, UserEventSizeLimit-1), Origin: strings.Repeat("o", maxValueLen)}
	raw, err := encodeMessage(msgUserEvent, ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > maxBroadcastSize {
		t.Errorf("a user event at the size limit encodes to %d bytes, more than %d", len(raw), maxBroadcastSize)
	}
}

func TestMemberlistLogLines(t *testing.T) {
	tests := []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5", slog.LevelDebug, "Stream connection from=1.2.3.4:5"},
		{"[INFO] memberlist: Marking b as failed", slog.LevelInfo, "Marking b as failed"},
		{"[WARN] memberlist: Refuting a suspect message (from: b)", slog.LevelWarn, "Refuting a suspect message (from: b)"},
		{"[ERR] memberlist: Failed to send ping", slog.LevelError, "Failed to send ping"},
		{"[ERROR] something", slog.LevelError, "something"},
		{"[ERR] Failed to shutdown transport: x", slog.LevelError, "Failed to shutdown transport: x"},
		{"Err: Could not set the deadline: x", slog.LevelInfo, "Err: Could not set the deadline: x"},
		{"[", slog.LevelInfo, "["},
		{"", slog.LevelInfo, ""},
	}
	for _, tc := range tests {
		level, msg := parseMemberlistLine(tc.line)
		if level != tc.level || msg != tc.msg {
			t.Errorf("parse(%q) = %v %q, want %v %q", tc.line, level, msg, tc.level, tc.msg)
		}
	}
}

func TestMemberlistLogWriter(t *testing.T) {
	rec := newRecorder()
	l := newMemberlistLogger(rec.logger())
	l.Printf("[WARN] memberlist: Got ping for unexpected node x from=1.1.1.1:1")
	l.Printf("[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=2.2.2.2:2")
	l.Printf("[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=2.2.2.2:2")
	l.Printf("[ERR] memberlist: discarding stream with unacceptable label \"herd/dc2\": from=3.3.3.3:3")
	l.Printf("[DEBUG] memberlist: failed to join 4.4.4.4:1: no installed keys could decrypt the message")
	if _, ok := rec.find(slog.LevelWarn, "Got ping for unexpected node x", "component=memberlist"); !ok {
		t.Error("plain warning not passed through")
	}
	if _, ok := rec.find(slog.LevelError, "Decrypt packet failed"); ok {
		t.Error("a decrypt failure was logged at error level next to the clear warning")
	}
	n := 0
	rec.mu.Lock()
	for _, r := range *rec.records {
		if strings.Contains(recordText(r), "check --encrypt") {
			n++
		}
	}
	rec.mu.Unlock()
	if n != 1 {
		t.Errorf("%d key warnings for one peer, want 1 (rate limited)", n)
	}
	if _, ok := rec.find(slog.LevelWarn, "4.4.4.4"); ok {
		t.Error("our own failed join produced a rejection warning")
	}
	if _, ok := rec.find(slog.LevelWarn, "check --idc", "peer=3.3.3.3:3"); !ok {
		t.Error("no label warning")
	}
}

func TestJoinErrorText(t *testing.T) {
	tests := []struct {
		err      string
		mismatch bool
	}{
		{"failed to join 1.2.3.4:7946: EOF", true},
		{"failed to join 1.2.3.4:7946: read tcp 1.2.3.4:7946: read: connection reset by peer", true},
		{"failed to join 1.2.3.4:7946: No installed keys could decrypt the message", true},
		{"failed to join 1.2.3.4:7946: remote error: encryption is configured but remote state is not encrypted", true},
		{"failed to join 1.2.3.4:7946: dial tcp 1.2.3.4:7946: connect: connection refused", false},
		{"failed to join 1.2.3.4:7946: i/o timeout", false},
	}
	for _, tc := range tests {
		e := &joinError{addrs: []string{"1.2.3.4:7946"}, err: errors.New("1 error occurred:\n\t* " + tc.err + "\n\n"), mismatch: looksLikeMismatch(tc.err)}
		msg := e.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("join error spans lines: %q", msg)
		}
		if got := strings.Contains(msg, "check --encrypt and --idc"); got != tc.mismatch {
			t.Errorf("%q: hint = %v, want %v", tc.err, got, tc.mismatch)
		}
	}
}

func TestBroadcastTypes(t *testing.T) {
	notify := make(chan struct{})
	a := &stateBroadcast{node: "n1", msg: []byte("a"), notify: notify}
	b := &stateBroadcast{node: "n1", msg: []byte("b")}
	c := &stateBroadcast{node: "n2", msg: []byte("c")}
	if !b.Invalidates(a) || c.Invalidates(a) {
		t.Error("a newer state must replace only the same node's state")
	}
	a.Finished()
	select {
	case <-notify:
	default:
		t.Error("Finished did not notify")
	}
	b.Finished() // nil notify must not panic
	u := &userEventBroadcast{msg: []byte("u")}
	if u.Invalidates(&userEventBroadcast{}) || !bytes.Equal(u.Message(), []byte("u")) {
		t.Error("user events never replace each other")
	}
}
