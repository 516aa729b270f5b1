package consensus_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
)

func fsmTestNew(t *testing.T) *consensus.FSM {
	t.Helper()
	s, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	return consensus.NewFSM(s, slog.New(slog.DiscardHandler))
}

func fsmTestCmd(t *testing.T, typ consensus.MessageType, id string, body any) []byte {
	t.Helper()
	b, err := consensus.EncodeCommand(typ, id, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fsmTestApply(t *testing.T, f *consensus.FSM, idx uint64, data []byte) *consensus.ApplyResult {
	t.Helper()
	out := f.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data})
	res, ok := out.(*consensus.ApplyResult)
	if !ok || res == nil {
		t.Fatalf("Apply returned %T %v, want *ApplyResult", out, out)
	}
	return res
}

func fsmTestPersist(t *testing.T, s *state.Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func fsmTestCode(res *consensus.ApplyResult) string {
	if res.Err == nil {
		return ""
	}
	return res.Err.Code
}

func u64p(v uint64) *uint64 { return &v }

// fsmTestLog is a command log with the code each entry must produce.
type fsmTestLog struct {
	typ      consensus.MessageType
	id       string
	body     any
	wantCode string
}

func fsmTestSequence() []fsmTestLog {
	return []fsmTestLog{
		{consensus.KVSetType, "c1", consensus.KVSetRequest{Scope: "global", Key: "a", Value: []byte("1"), CAS: u64p(0)}, ""},
		{consensus.KVSetType, "c2", consensus.KVSetRequest{Scope: "global", Key: "a", Value: []byte("2"), CAS: u64p(1)}, ""},
		{consensus.KVSetType, "c3", consensus.KVSetRequest{Scope: "global", Key: "a", Value: []byte("x"), CAS: u64p(1)}, consensus.CodeCASConflict},
		{consensus.KVSetType, "", consensus.KVSetRequest{Scope: "idc1", Key: "b", Value: []byte("b")}, ""},
		{consensus.KVSetType, "c5", consensus.KVSetRequest{Scope: "idc1", Key: "bad//key"}, consensus.CodeBadRequest},
		{consensus.KVDeleteType, "c6", consensus.KVDeleteRequest{Scope: "idc1", Key: "b", CAS: u64p(1)}, ""},
		{consensus.KVReplicateType, "c7", consensus.KVReplicateRequest{Scope: "idc2", SourceIndex: 70, Entries: []*state.KVEntry{
			{Key: "r", Value: []byte("r"), Version: 3, CreateIndex: 50, ModifyIndex: 70},
		}}, ""},
		{consensus.KVReplicateType, "c8", consensus.KVReplicateRequest{Scope: "idc2", Entries: []*state.KVEntry{{Key: "r"}}}, consensus.CodeBadRequest},
		{99, "c9", struct{}{}, consensus.CodeUnknownCommand},
		{99 | consensus.IgnoreUnknownTypeFlag, "c10", struct{}{}, ""},
		{consensus.KVDeleteType | consensus.IgnoreUnknownTypeFlag, "c11", consensus.KVDeleteRequest{Scope: "global", Key: "a", CAS: u64p(5)}, consensus.CodeCASConflict},
	}
}

func TestFSMApplySequence(t *testing.T) {
	f := fsmTestNew(t)
	var results []*consensus.ApplyResult
	for i, c := range fsmTestSequence() {
		idx := uint64(i + 1)
		res := fsmTestApply(t, f, idx, fsmTestCmd(t, c.typ, c.id, c.body))
		if res.Index != idx || fsmTestCode(res) != c.wantCode {
			t.Fatalf("entry %d (%v): result %+v err %v, want code %q", idx, c.typ, res, res.Err, c.wantCode)
		}
		results = append(results, res)
	}
	if e := results[1].Entry; e == nil || e.Version != 2 || string(e.Value) != "2" || e.CreateIndex != 1 || e.ModifyIndex != 2 {
		t.Fatalf("second set entry = %+v", e)
	}
	if msg := results[2].Err.Message; !strings.Contains(msg, "want version 1, have 2") {
		t.Fatalf("cas conflict message %q", msg)
	}
	if msg := results[8].Err.Error(); !strings.Contains(msg, "unknown_command: unknown command type 99") {
		t.Fatalf("unknown command error %q", msg)
	}

	st := f.Store()
	if _, e, _ := st.KVGet(nil, "global", "a"); e == nil || e.Version != 2 {
		t.Fatalf("global/a = %+v", e)
	}
	if _, e, _ := st.KVGet(nil, "idc1", "b"); e != nil {
		t.Fatalf("idc1/b not deleted: %+v", e)
	}
	if _, e, _ := st.KVGet(nil, "idc2", "r"); e == nil || e.Version != 3 || e.ModifyIndex != 70 {
		t.Fatalf("replicated idc2/r = %+v", e)
	}
	if st.ReplicatedIndex("idc2") != 70 {
		t.Fatalf("replicated index %d", st.ReplicatedIndex("idc2"))
	}
	// Results of commands with ids were recorded, failures included; the
	// ignored command was not.
	for _, id := range []string{"c1", "c3", "c5", "c9", "c11"} {
		if _, ok := st.RequestSeen(id); !ok {
			t.Errorf("request %s not recorded", id)
		}
	}
	if _, ok := st.RequestSeen("c10"); ok {
		t.Error("ignored command was recorded")
	}

	// Non-command entries are acknowledged and change nothing.
	before := fsmTestPersist(t, st)
	out := f.Apply(&raft.Log{Index: 50, Type: raft.LogConfiguration, Data: []byte("whatever")})
	if res := out.(*consensus.ApplyResult); res.Index != 50 || res.Err != nil {
		t.Fatalf("configuration entry: %+v", res)
	}
	if !bytes.Equal(before, fsmTestPersist(t, st)) {
		t.Fatal("non-command entry changed the state")
	}
}

func TestFSMDeterministic(t *testing.T) {
	a, b := fsmTestNew(t), fsmTestNew(t)
	for i, c := range fsmTestSequence() {
		data := fsmTestCmd(t, c.typ, c.id, c.body)
		ra := fsmTestApply(t, a, uint64(i+1), data)
		rb := fsmTestApply(t, b, uint64(i+1), data)
		if !reflect.DeepEqual(ra, rb) {
			t.Fatalf("entry %d: results differ: %+v vs %+v", i+1, ra, rb)
		}
	}
	if !bytes.Equal(fsmTestPersist(t, a.Store()), fsmTestPersist(t, b.Store())) {
		t.Fatal("same log, different state")
	}
}

func TestFSMExactlyOnce(t *testing.T) {
	cases := []struct {
		name     string
		typ      consensus.MessageType
		body     any
		wantCode string
	}{
		{"set", consensus.KVSetType, consensus.KVSetRequest{Scope: "global", Key: "k", Value: []byte("big value")}, ""},
		{"set empty value", consensus.KVSetType, consensus.KVSetRequest{Scope: "global", Key: "k", Value: []byte{}}, ""},
		{"create only", consensus.KVSetType, consensus.KVSetRequest{Scope: "global", Key: "k", CAS: u64p(0)}, ""},
		{"conflict", consensus.KVSetType, consensus.KVSetRequest{Scope: "global", Key: "k", CAS: u64p(9)}, consensus.CodeCASConflict},
		{"delete", consensus.KVDeleteType, consensus.KVDeleteRequest{Scope: "global", Key: "k"}, ""},
		{"bad request", consensus.KVSetType, consensus.KVSetRequest{Scope: "global", Key: "/k"}, consensus.CodeBadRequest},
		{"unknown", 42, struct{}{}, consensus.CodeUnknownCommand},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := fsmTestNew(t)
			data := fsmTestCmd(t, c.typ, "retry-me", c.body)
			first := fsmTestApply(t, f, 10, data)
			if fsmTestCode(first) != c.wantCode {
				t.Fatalf("first apply: %+v (%v)", first, first.Err)
			}
			state1 := fsmTestPersist(t, f.Store())
			idx1 := f.Store().LatestIndex()

			second := fsmTestApply(t, f, 11, data)
			if !reflect.DeepEqual(first, second) {
				t.Fatalf("retry result %+v (entry %+v), first %+v (entry %+v)", second, second.Entry, first, first.Entry)
			}
			if second.Index != 10 {
				t.Fatalf("retry reports index %d, want the first apply's 10", second.Index)
			}
			if !bytes.Equal(state1, fsmTestPersist(t, f.Store())) || f.Store().LatestIndex() != idx1 {
				t.Fatal("retry changed the state")
			}
		})
	}

	// Dedupe is by id only: the same body under a new id applies again.
	f := fsmTestNew(t)
	body := consensus.KVSetRequest{Scope: "global", Key: "k", Value: []byte("v")}
	fsmTestApply(t, f, 1, fsmTestCmd(t, consensus.KVSetType, "a", body))
	fsmTestApply(t, f, 2, fsmTestCmd(t, consensus.KVSetType, "a", body))
	res := fsmTestApply(t, f, 3, fsmTestCmd(t, consensus.KVSetType, "b", body))
	if res.Entry == nil || res.Entry.Version != 2 {
		t.Fatalf("new id: %+v", res.Entry)
	}
	// No id: no dedupe.
	fsmTestApply(t, f, 4, fsmTestCmd(t, consensus.KVSetType, "", body))
	res = fsmTestApply(t, f, 5, fsmTestCmd(t, consensus.KVSetType, "", body))
	if res.Entry == nil || res.Entry.Version != 4 {
		t.Fatalf("no id: %+v", res.Entry)
	}
}

func TestFSMMalformed(t *testing.T) {
	f := fsmTestNew(t)
	cases := []struct {
		name    string
		data    []byte
		wantMsg string
	}{
		{"empty", nil, "empty"},
		{"garbage", []byte{0, 'x'}, "decode kv-set command"},
		{"bad body", append([]byte{0}, `{"body":{"key":5}}`...), "decode kv-set body"},
		{"bad delete body", append([]byte{1}, `{"body":[]}`...), "decode kv-delete body"},
		{"bad replicate body", append([]byte{2}, `{"body":"x"}`...), "decode kv-replicate body"},
		{"null body", append([]byte{0}, `{"body":null}`...), "invalid scope: empty"},
		{"bad request id", append([]byte{0}, `{"id":"a b","body":{}}`...), "invalid request id"},
		{"big value", fsmTestCmd(t, consensus.KVSetType, "", consensus.KVSetRequest{Scope: "global", Key: "k", Value: make([]byte, state.MaxValueSize+1)}), "invalid value"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := fsmTestApply(t, f, uint64(i+1), c.data)
			if fsmTestCode(res) != consensus.CodeBadRequest || !strings.Contains(res.Err.Message, c.wantMsg) {
				t.Fatalf("result %+v (%v), want bad_request containing %q", res, res.Err, c.wantMsg)
			}
		})
	}
	if f.Store().LatestIndex() != 0 {
		t.Fatal("malformed commands wrote state")
	}
}

// fsmTestSink is an in-memory raft.SnapshotSink.
type fsmTestSink struct {
	buf       bytes.Buffer
	failAfter int // fail writes once this many bytes are written; 0 = never
	closed    bool
	cancelled bool
}

var _ raft.SnapshotSink = (*fsmTestSink)(nil)

func (s *fsmTestSink) Write(p []byte) (int, error) {
	if s.failAfter > 0 && s.buf.Len()+len(p) > s.failAfter {
		return 0, errors.New("disk full")
	}
	return s.buf.Write(p)
}
func (s *fsmTestSink) Close() error  { s.closed = true; return nil }
func (s *fsmTestSink) ID() string    { return "test" }
func (s *fsmTestSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	src := fsmTestNew(t)
	for i, c := range fsmTestSequence() {
		fsmTestApply(t, src, uint64(i+1), fsmTestCmd(t, c.typ, c.id, c.body))
	}
	want := fsmTestPersist(t, src.Store())

	var rf raft.FSM = src
	snap, err := rf.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Applies after Snapshot do not leak into it.
	fsmTestApply(t, src, 100, fsmTestCmd(t, consensus.KVSetType, "late", consensus.KVSetRequest{Scope: "global", Key: "late"}))
	sink := &fsmTestSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	if !bytes.Equal(sink.buf.Bytes(), want) {
		t.Fatal("snapshot differs from the state at Snapshot time")
	}

	dst := fsmTestNew(t)
	fsmTestApply(t, dst, 1, fsmTestCmd(t, consensus.KVSetType, "", consensus.KVSetRequest{Scope: "global", Key: "stale"}))
	abandon := dst.Store().AbandonCh()
	var rd raft.FSM = dst
	if err := rd.Restore(io.NopCloser(bytes.NewReader(sink.buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fsmTestPersist(t, dst.Store()), want) {
		t.Fatal("restored state differs")
	}
	select {
	case <-abandon:
	default:
		t.Fatal("restore did not abandon the old state")
	}
	// Dedupe survives the snapshot: c2 is answered, not re-applied.
	seq := fsmTestSequence()
	res := fsmTestApply(t, dst, 200, fsmTestCmd(t, seq[1].typ, seq[1].id, seq[1].body))
	if res.Index != 2 || res.Err != nil || res.Entry == nil || res.Entry.Version != 2 {
		t.Fatalf("replayed c2 after restore: %+v", res)
	}

	// A corrupt snapshot is refused and the state stays.
	corrupt := bytes.Clone(sink.buf.Bytes())
	corrupt[len(corrupt)/2] ^= 0xff
	before := fsmTestPersist(t, dst.Store())
	if err := rd.Restore(io.NopCloser(bytes.NewReader(corrupt))); err == nil || !strings.HasPrefix(err.Error(), "fsm restore: state: restore snapshot:") {
		t.Fatalf("corrupt restore: %v", err)
	}
	if !bytes.Equal(before, fsmTestPersist(t, dst.Store())) {
		t.Fatal("corrupt restore changed the state")
	}

	// A failing sink is cancelled, not closed.
	snap, _ = rf.Snapshot()
	bad := &fsmTestSink{failAfter: 64}
	if err := snap.Persist(bad); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("persist to failing sink: %v", err)
	}
	if !bad.cancelled || bad.closed {
		t.Fatalf("failing sink closed=%v cancelled=%v", bad.closed, bad.cancelled)
	}
}

// fsmTestCloser records whether Restore closed its reader.
type fsmTestCloser struct {
	io.Reader
	closed bool
}

func (c *fsmTestCloser) Close() error { c.closed = true; return nil }

func TestFSMRestoreClosesReader(t *testing.T) {
	f := fsmTestNew(t)
	rc := &fsmTestCloser{Reader: bytes.NewReader(fsmTestPersist(t, f.Store()))}
	if err := f.Restore(rc); err != nil || !rc.closed {
		t.Fatalf("restore: err %v closed %v", err, rc.closed)
	}
}
