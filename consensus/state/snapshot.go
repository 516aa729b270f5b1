package state

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"
)

// Snapshot stream layout (all integers big-endian):
//
//	header  "HERDSNAP" | version uint16
//	records kind uint8 | length uint32 | JSON payload      (repeated)
//	end     kind 0     | record count uint64
//	trailer SHA-256 of every byte above (32 bytes)
//
// Persist writes tables in persistOrder and rows in id-index order, so the
// same state always yields the same bytes. Restore accepts records in any
// order but refuses duplicates, unknown kinds, invalid rows, a count or
// checksum mismatch and trailing bytes.
const (
	snapshotMagic   = "HERDSNAP"
	snapshotVersion = 1

	// maxRecordSize bounds one record: a KV entry of MaxValueSize is about
	// 700 KB as base64 JSON.
	maxRecordSize = 4 << 20
)

// Record kinds. Like raft commands they are only ever appended.
const (
	recordEnd         uint8 = 0
	recordIndex       uint8 = 1
	recordKV          uint8 = 2
	recordRequest     uint8 = 3
	recordReplication uint8 = 4
)

// persistOrder lists the tables in snapshot order with their record kind.
var persistOrder = []struct {
	table string
	kind  uint8
}{
	{tableIndex, recordIndex},
	{tableKV, recordKV},
	{tableRequests, recordRequest},
	{tableReplication, recordReplication},
}

// Persist writes the whole current state to w; see Snapshot.Persist.
func (s *Store) Persist(w io.Writer) error {
	return s.Snapshot().Persist(w)
}

// Persist writes the snapshot to w in the versioned, checksummed format
// that Restore reads. The output depends only on the state.
func (sn *Snapshot) Persist(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	sum := sha256.New()
	out := io.MultiWriter(bw, sum)

	var hdr [len(snapshotMagic) + 2]byte
	copy(hdr[:], snapshotMagic)
	binary.BigEndian.PutUint16(hdr[len(snapshotMagic):], snapshotVersion)
	if _, err := out.Write(hdr[:]); err != nil {
		return fmt.Errorf("state: persist header: %w", err)
	}

	txn := sn.db.Txn(false)
	defer txn.Abort()
	var count uint64
	for _, t := range persistOrder {
		it, err := txn.Get(t.table, indexID)
		if err != nil {
			return fmt.Errorf("state: persist table %s: %w", t.table, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			payload, err := json.Marshal(raw)
			if err != nil {
				return fmt.Errorf("state: persist table %s: encode row: %w", t.table, err)
			}
			if len(payload) > maxRecordSize {
				return fmt.Errorf("state: persist table %s: row of %d bytes exceeds the %d-byte record limit", t.table, len(payload), maxRecordSize)
			}
			var rh [5]byte
			rh[0] = t.kind
			binary.BigEndian.PutUint32(rh[1:], uint32(len(payload)))
			if _, err := out.Write(rh[:]); err != nil {
				return fmt.Errorf("state: persist table %s: %w", t.table, err)
			}
			if _, err := out.Write(payload); err != nil {
				return fmt.Errorf("state: persist table %s: %w", t.table, err)
			}
			count++
		}
	}

	var end [9]byte
	end[0] = recordEnd
	binary.BigEndian.PutUint64(end[1:], count)
	if _, err := out.Write(end[:]); err != nil {
		return fmt.Errorf("state: persist end marker: %w", err)
	}
	if _, err := bw.Write(sum.Sum(nil)); err != nil {
		return fmt.Errorf("state: persist checksum: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("state: persist: %w", err)
	}
	return nil
}

// Restore replaces the whole state with the snapshot read from r. The new
// state is built and verified aside and swapped in only when the stream is
// complete and its checksum matches; on any error the old state stays and
// the error says what was wrong. A successful Restore closes the previous
// AbandonCh so blocking queries re-run.
func (s *Store) Restore(r io.Reader) error {
	db, err := decodeSnapshot(r)
	if err != nil {
		return fmt.Errorf("state: restore snapshot: %w", err)
	}
	s.writeMu.Lock()
	old := s.gen.Swap(&generation{db: db, abandonCh: make(chan struct{})})
	s.writeMu.Unlock()
	close(old.abandonCh)
	return nil
}

// errTruncated marks a stream that ended early.
var errTruncated = errors.New("snapshot is truncated")

// readFull is io.ReadFull that reports a short stream as errTruncated.
func readFull(r io.Reader, buf []byte, what string) error {
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w (reading %s)", errTruncated, what)
		}
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

// decodeSnapshot reads a whole snapshot into a fresh memdb.
func decodeSnapshot(r io.Reader) (*memdb.MemDB, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	sum := sha256.New()
	in := io.TeeReader(br, sum) // everything before the trailer is hashed

	var hdr [len(snapshotMagic) + 2]byte
	if err := readFull(in, hdr[:], "header"); err != nil {
		return nil, err
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return nil, errors.New("not a herd state snapshot (bad magic)")
	}
	if v := binary.BigEndian.Uint16(hdr[len(snapshotMagic):]); v != snapshotVersion {
		return nil, fmt.Errorf("unsupported snapshot version %d (this build reads version %d)", v, snapshotVersion)
	}

	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("create memdb: %w", err)
	}
	txn := db.Txn(true)
	defer txn.Abort()

	var (
		count   uint64
		payload bytes.Buffer
	)
	for {
		var rh [5]byte
		if err := readFull(in, rh[:1], fmt.Sprintf("record %d", count)); err != nil {
			return nil, err
		}
		if rh[0] == recordEnd {
			break
		}
		if err := readFull(in, rh[1:], fmt.Sprintf("record %d length", count)); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(rh[1:])
		if n > maxRecordSize {
			return nil, fmt.Errorf("record %d claims %d bytes; the limit is %d", count, n, maxRecordSize)
		}
		// CopyN grows the buffer with the data actually present, so a
		// corrupt length cannot make us allocate it up front.
		payload.Reset()
		if _, err := io.CopyN(&payload, in, int64(n)); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w (reading record %d payload)", errTruncated, count)
			}
			return nil, fmt.Errorf("read record %d payload: %w", count, err)
		}
		if err := restoreRecord(txn, rh[0], payload.Bytes()); err != nil {
			return nil, fmt.Errorf("record %d: %w", count, err)
		}
		count++
	}

	var end [8]byte
	if err := readFull(in, end[:], "record count"); err != nil {
		return nil, err
	}
	if want := binary.BigEndian.Uint64(end[:]); want != count {
		return nil, fmt.Errorf("end marker counts %d records, stream held %d", want, count)
	}
	computed := sum.Sum(nil)
	stored := make([]byte, sha256.Size)
	if err := readFull(br, stored, "checksum"); err != nil {
		return nil, err
	}
	if !bytes.Equal(stored, computed) {
		return nil, errors.New("checksum mismatch: the snapshot is corrupt")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, fmt.Errorf("read after checksum: %w", err)
		}
		return nil, errors.New("unexpected data after the checksum")
	}
	txn.Commit()
	return db, nil
}

// restoreRecord decodes, validates and inserts one record.
func restoreRecord(txn *memdb.Txn, kind uint8, payload []byte) error {
	switch kind {
	case recordIndex:
		var e indexEntry
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("decode index row: %w", err)
		}
		if !knownTable(e.Table) {
			return fmt.Errorf("index row names unknown table %q", e.Table)
		}
		return insertOnce(txn, tableIndex, &e, e.Table)
	case recordKV:
		var e KVEntry
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("decode kv row: %w", err)
		}
		if err := validateScopeKey(e.Scope, e.Key); err != nil {
			return err
		}
		if err := ValidateValue(e.Value); err != nil {
			return err
		}
		if e.Version == 0 {
			return fmt.Errorf("kv row %s/%s has version 0", e.Scope, e.Key)
		}
		return insertOnce(txn, tableKV, &e, e.Scope, e.Key)
	case recordRequest:
		var e RequestRecord
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("decode request row: %w", err)
		}
		if err := ValidateRequestID(e.ID); err != nil {
			return err
		}
		return insertOnce(txn, tableRequests, &e, e.ID)
	case recordReplication:
		var e replicationEntry
		if err := json.Unmarshal(payload, &e); err != nil {
			return fmt.Errorf("decode replication row: %w", err)
		}
		if err := ValidateScope(e.Scope); err != nil {
			return err
		}
		return insertOnce(txn, tableReplication, &e, e.Scope)
	default:
		return fmt.Errorf("unknown record kind %d", kind)
	}
}

// insertOnce inserts obj unless a row with the same id already exists:
// Persist never writes one twice, so a duplicate means corruption.
func insertOnce(txn *memdb.Txn, table string, obj any, id ...any) error {
	existing, err := txn.First(table, indexID, id...)
	if err != nil {
		return fmt.Errorf("lookup %s row: %w", table, err)
	}
	if existing != nil {
		return fmt.Errorf("duplicate %s row %v", table, id)
	}
	if err := txn.Insert(table, obj); err != nil {
		return fmt.Errorf("insert %s row: %w", table, err)
	}
	return nil
}

func knownTable(name string) bool {
	for _, t := range persistOrder {
		if t.table == name {
			return true
		}
	}
	return false
}
