package consensus_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
)

// registryTestType is a registered command that moves a counter and writes
// a second key in the same transaction, refusing to go below zero.
const registryTestType consensus.MessageType = 120

type registryTestBody struct {
	Delta int `json:"delta"`
}

func init() {
	consensus.RegisterCommand(registryTestType, "test-counter", func(w *state.KVWriter, body json.RawMessage) (any, error) {
		var b registryTestBody
		if err := json.Unmarshal(body, &b); err != nil {
			return nil, consensus.CommandErrorf(consensus.CodeBadRequest, "decode: %v", err)
		}
		cur := 0
		if e, err := w.Get("dc1", "counter"); err != nil {
			return nil, err
		} else if e != nil {
			cur, _ = strconv.Atoi(string(e.Value))
		}
		if _, err := w.Set("dc1", "log/"+strconv.FormatUint(w.Index(), 10), []byte("x"), nil); err != nil {
			return nil, err
		}
		if cur+b.Delta < 0 {
			return nil, consensus.CommandErrorf("negative", "counter would go to %d", cur+b.Delta)
		}
		if _, err := w.Set("dc1", "counter", []byte(strconv.Itoa(cur+b.Delta)), nil); err != nil {
			return nil, err
		}
		return map[string]int{"value": cur + b.Delta}, nil
	})
}

func TestRegisteredCommand(t *testing.T) {
	f := fsmTestNew(t)
	res := fsmTestApply(t, f, 1, fsmTestCmd(t, registryTestType, "req-1", registryTestBody{Delta: 2}))
	if res.Err != nil || string(res.Data) != `{"value":2}` {
		t.Fatalf("first apply: %+v data=%s", res.Err, res.Data)
	}
	// A refused command changes nothing, not even the key written before
	// the refusal inside the same transaction.
	res = fsmTestApply(t, f, 2, fsmTestCmd(t, registryTestType, "req-2", registryTestBody{Delta: -5}))
	if fsmTestCode(res) != "negative" {
		t.Fatalf("refusal: got %+v", res.Err)
	}
	if _, e, _ := f.Store().KVGet(nil, "dc1", "log/2"); e != nil {
		t.Fatal("a refused command left a write behind")
	}
	// The same request id answers from the first result.
	res = fsmTestApply(t, f, 3, fsmTestCmd(t, registryTestType, "req-1", registryTestBody{Delta: 2}))
	if string(res.Data) != `{"value":2}` || res.Index != 1 {
		t.Fatalf("replay: index %d data %s", res.Index, res.Data)
	}
	if _, e, _ := f.Store().KVGet(nil, "dc1", "counter"); e == nil || string(e.Value) != "2" {
		t.Fatalf("counter = %v", e)
	}
	if got := registryTestType.String(); got != "test-counter" {
		t.Fatalf("String() = %q", got)
	}
}

func TestRegisterCommandRefusesReservedTypes(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("registering a consensus-owned type did not panic")
		}
	}()
	consensus.RegisterCommand(consensus.KVSetType, "bad", func(*state.KVWriter, json.RawMessage) (any, error) { return nil, nil })
}
