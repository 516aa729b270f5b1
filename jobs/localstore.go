package jobs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/herd-io/herd/jobs/model"
)

// localStore is an agent's own record of the tasks it accepted, kept on
// disk so that a task runs at most once even across restarts (the leader
// re-sends tasks it has no acknowledgement for) and so that a result is
// reported until the control group has it.
type localStore struct {
	db *bolt.DB
}

var bucketTasks = []byte("tasks")

// taskRecord is one accepted task's life on this agent.
type taskRecord struct {
	RunID    string            `json:"run_id"`
	IDC      string            `json:"idc"`
	Host     string            `json:"host"`
	Accepted time.Time         `json:"accepted"`
	Result   *model.HostResult `json:"result,omitempty"` // set once finished
	Reported bool              `json:"reported"`         // the control group has Result
	Output   string            `json:"output"`           // path of the full output
	Task     json.RawMessage   `json:"task,omitempty"`   // pushes only: resumed after a restart
}

func taskKey(runID, host string) []byte { return []byte(runID + "\x00" + host) }

func openLocalStore(path string) (*localStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("jobs store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("jobs store %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketTasks)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("jobs store %s: %w", path, err)
	}
	return &localStore{db: db}, nil
}

func (s *localStore) close() error { return s.db.Close() }

// begin records rec as accepted unless a record for its run and host
// exists; it returns the existing record and false in that case.
func (s *localStore) begin(rec taskRecord) (taskRecord, bool, error) {
	var existing taskRecord
	fresh := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTasks)
		k := taskKey(rec.RunID, rec.Host)
		if v := b.Get(k); v != nil {
			return json.Unmarshal(v, &existing)
		}
		fresh = true
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put(k, v)
	})
	if err != nil {
		return taskRecord{}, false, fmt.Errorf("jobs store: record task %s/%s: %w", rec.RunID, rec.Host, err)
	}
	if fresh {
		return rec, true, nil
	}
	return existing, false, nil
}

// update rewrites the record of runID/host with fn.
func (s *localStore) update(runID, host string, fn func(*taskRecord)) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTasks)
		k := taskKey(runID, host)
		v := b.Get(k)
		if v == nil {
			return fmt.Errorf("jobs store: no task %s/%s", runID, host)
		}
		var rec taskRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		fn(&rec)
		nv, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return b.Put(k, nv)
	})
}

func (s *localStore) get(runID, host string) (taskRecord, bool, error) {
	var rec taskRecord
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTasks).Get(taskKey(runID, host))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &rec)
	})
	return rec, found, err
}

// all returns every record.
func (s *localStore) all() ([]taskRecord, error) {
	var out []taskRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTasks).ForEach(func(_, v []byte) error {
			var rec taskRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			out = append(out, rec)
			return nil
		})
	})
	return out, err
}

// prune deletes reported records accepted before cutoff and returns them,
// so their output files can go too.
func (s *localStore) prune(cutoff time.Time) ([]taskRecord, error) {
	var gone []taskRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTasks)
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var rec taskRecord
			if json.Unmarshal(v, &rec) != nil {
				continue
			}
			if rec.Reported && rec.Accepted.Before(cutoff) {
				if err := c.Delete(); err != nil {
					return err
				}
				gone = append(gone, rec)
			}
		}
		return nil
	})
	return gone, err
}
