package state

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// Table names. The set is fixed: a snapshot lists tables in persistOrder, and
// adding a table means adding it there and bumping snapshotVersion.
const (
	tableIndex       = "index"
	tableKV          = "kv"
	tableRequests    = "requests"
	tableReplication = "replication"
)

// Index names. memdb derives "<name>_prefix" from every index whose indexer
// supports prefixes, which KVList uses as "id_prefix".
const (
	indexID    = "id"
	indexIndex = "index"
)

// indexEntry is a row of the index table: the raft index of the last write
// to Table. Blocking queries compare against it.
type indexEntry struct {
	Table string `json:"table"`
	Value uint64 `json:"value"`
}

// replicationEntry is a row of the replication table: the source IDC's raft
// index of the last KVReplaceScope for Scope, so the replicator resumes from
// there instead of starting over after a leader change.
type replicationEntry struct {
	Scope       string `json:"scope"`
	SourceIndex uint64 `json:"source_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// schema returns the memdb schema of the state store. It is built once per
// memdb (NewStore and every Restore) from the table functions below.
func schema() *memdb.DBSchema {
	db := &memdb.DBSchema{Tables: make(map[string]*memdb.TableSchema)}
	for _, fn := range []func() *memdb.TableSchema{
		indexTableSchema,
		kvTableSchema,
		requestsTableSchema,
		replicationTableSchema,
	} {
		t := fn()
		if _, dup := db.Tables[t.Name]; dup {
			panic(fmt.Sprintf("state: duplicate table %q", t.Name))
		}
		db.Tables[t.Name] = t
	}
	return db
}

// indexTableSchema tracks the most recent raft index written to each table.
func indexTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableIndex,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "Table"},
			},
		},
	}
}

// kvTableSchema holds *KVEntry rows keyed by (Scope, Key). The compound index
// supports prefix scans on its last field, so ("idc1", "app/") walks exactly
// one scope: the scope component is NUL-terminated, so "idc1" never matches
// "idc10".
func kvTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableKV,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: &memdb.CompoundIndex{
					Indexes: []memdb.Indexer{
						&memdb.StringFieldIndex{Field: "Scope"},
						&memdb.StringFieldIndex{Field: "Key"},
					},
				},
			},
		},
	}
}

// requestsTableSchema holds *RequestRecord rows. The index on Index lets
// pruning walk the oldest records first and stop at the window edge, so the
// set pruned depends only on the log.
func requestsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableRequests,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "ID"},
			},
			indexIndex: {
				Name:    indexIndex,
				Indexer: &memdb.UintFieldIndex{Field: "Index"},
			},
		},
	}
}

// replicationTableSchema holds *replicationEntry rows keyed by scope.
func replicationTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableReplication,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "Scope"},
			},
		},
	}
}
