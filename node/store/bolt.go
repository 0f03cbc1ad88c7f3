package store

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sibylhq/sibyl/command"
)

// OpenBolt opens (creating if needed) the node's store in one bbolt file. Sync stays on:
// an acked append must survive a crash (docs/replication.md case 5), so NoSync is never set.
func OpenBolt(path string) (Store, error) {
	db, err := bolt.Open(path, 0o600, boltOptions())
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &boltStore{db: db, commits: newCommitter(db)}
	return s, nil
}

// boltOptions are the settings of every node store file.
func boltOptions() *bolt.Options {
	return &bolt.Options{
		// Fail instead of waiting forever when another process holds the file lock.
		Timeout: 5 * time.Second,
		// Address space only on Linux; with it, read transactions do not block a write
		// transaction that grows the file up to this size.
		//
		// 8 GiB: a snapshot holds a read transaction for as long as its transfer lasts, and
		// a writer that must remap the file waits for every reader; mapping ahead keeps
		// foreground writes from stalling behind a snapshot.
		InitialMmapSize: 8 << 30,
		// 16 KiB pages (new files only; an existing file keeps its own): bbolt writes each
		// dirty page with its own pwrite, and a snapshot being installed writes every page.
		// Measured with 1 GiB snapshots: 182 -> 222 MB/s; group-commit writes unchanged.
		PageSize:     16 << 10,
		FreelistType: bolt.FreelistMapType,
		// The freelist is rebuilt by a scan on open instead of being written at every
		// commit: one page less per group commit, a slower open.
		NoFreelistSync: true,
	}
}

type boltStore struct {
	db      *bolt.DB
	commits *committer
}

// parseGroupBucket returns the group a top-level bucket holds, if it is a group's (other
// names leave room for other top-level buckets).
func parseGroupBucket(name []byte) (command.ServerID, bool) {
	if len(name) < 2 || name[0] != 'g' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(name[1:]), 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return command.ServerID(n), true
}

// groupBucketName is "g" + decimal server ID: one top-level bucket per group.
func groupBucketName(g command.ServerID) []byte {
	return strconv.AppendUint([]byte("g"), uint64(g), 10)
}

func (s *boltStore) Groups() ([]command.ServerID, error) {
	var gs []command.ServerID
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if g, ok := parseGroupBucket(name); ok {
				gs = append(gs, g)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	slices.Sort(gs) // bucket order is byte order: g10 < g2
	return gs, nil
}

// Group creates the copy durably (with its CopyID) the first time it is asked for, so that
// Groups lists every copy a GroupStore was handed out for.
func (s *boltStore) Group(g command.ServerID) (GroupStore, error) {
	if g == 0 {
		return nil, fmt.Errorf("open group 0: server IDs are 1..65535")
	}
	name := groupBucketName(g)
	var exists bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		exists = tx.Bucket(name) != nil
		return nil
	}); err != nil {
		return nil, fmt.Errorf("open group %d: %w", g, err)
	}
	if exists {
		if err := s.addMissingBuckets(name); err != nil {
			return nil, fmt.Errorf("open group %d: %w", g, err)
		}
	} else {
		err := s.db.Update(func(tx *bolt.Tx) error {
			if tx.Bucket(name) != nil {
				return nil // created concurrently
			}
			top, err := tx.CreateBucket(name)
			if err != nil {
				return err
			}
			for _, sub := range subBucketNames {
				if _, err := top.CreateBucket([]byte(sub)); err != nil {
					return fmt.Errorf("create bucket %s: %w", sub, err)
				}
			}
			bk, err := boltBuckets(top)
			if err != nil {
				return err
			}
			return initGroup(bk)
		})
		if err != nil {
			return nil, fmt.Errorf("create group %d: %w", g, err)
		}
	}
	return &groupStore{g: g, txns: boltGroup{db: s.db, commits: s.commits, name: name}}, nil
}

func (s *boltStore) DropGroup(g command.ServerID) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		err := tx.DeleteBucket(groupBucketName(g))
		if err == bolt.ErrBucketNotFound {
			return nil // dropping a group we hold no copy of is already done
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("drop group %d: %w", g, err)
	}
	return nil
}

func (s *boltStore) Close() error {
	s.commits.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.db.Path(), err)
	}
	return nil
}

// boltGroup runs transactions over one group's buckets. It names the group rather than
// holding buckets, so a handle of a dropped group reports ErrNoCopy.
type boltGroup struct {
	db      *bolt.DB
	commits *committer
	name    []byte
}

func (bg boltGroup) view(fn func(*groupBuckets) error) error {
	return bg.db.View(func(tx *bolt.Tx) error { return bg.run(tx, fn) })
}

func (bg boltGroup) update(fn func(*groupBuckets) error) error {
	return bg.commits.update(func(tx *bolt.Tx) error { return bg.run(tx, fn) })
}

func (bg boltGroup) run(tx *bolt.Tx, fn func(*groupBuckets) error) error {
	top := tx.Bucket(bg.name)
	if top == nil {
		return ErrNoCopy
	}
	bk, err := boltBuckets(top)
	if err != nil {
		return err
	}
	if tx.Writable() {
		bk.reset = resetBoltBucket(top)
	}
	return fn(bk)
}

// resetBoltBucket empties a group's sub-bucket i by dropping and recreating it.
func resetBoltBucket(top *bolt.Bucket) func(i int) (storeKV, error) {
	return func(i int) (storeKV, error) {
		name := []byte(subBucketNames[i])
		if err := top.DeleteBucket(name); err != nil {
			return nil, fmt.Errorf("reset bucket %s: %w", name, err)
		}
		b, err := top.CreateBucket(name)
		if err != nil {
			return nil, fmt.Errorf("reset bucket %s: %w", name, err)
		}
		return boltKV{b}, nil
	}
}

// snapshot holds a bbolt read transaction open: bbolt keeps every page it sees alive
// (writers allocate elsewhere) until it is rolled back.
// Its size is the file's: counting the group's own bytes would read all of it twice.
func (bg boltGroup) snapshot() (*groupBuckets, uint64, func(), error) {
	return boltSnapshot(bg.db, bg.name)
}

// boltSnapshot opens a read transaction on group bucket name and hands out its buckets.
func boltSnapshot(db *bolt.DB, name []byte) (*groupBuckets, uint64, func(), error) {
	tx, err := db.Begin(false)
	if err != nil {
		return nil, 0, nil, err
	}
	top := tx.Bucket(name)
	if top == nil {
		tx.Rollback()
		return nil, 0, nil, ErrNoCopy
	}
	bk, err := boltBuckets(top)
	if err != nil {
		tx.Rollback()
		return nil, 0, nil, err
	}
	return bk, uint64(tx.Size()), func() { tx.Rollback() }, nil
}

func boltBuckets(top *bolt.Bucket) (*groupBuckets, error) {
	subs := make([]storeKV, len(subBucketNames))
	for i, name := range subBucketNames {
		b := top.Bucket([]byte(name))
		if b == nil {
			return nil, fmt.Errorf("bucket %s is missing", name)
		}
		subs[i] = boltKV{b}
	}
	return &groupBuckets{log: subs[0], meta: subs[1], epochs: subs[2], resources: subs[3],
		tombstones: subs[4], dedupe: subs[5], tickets: subs[6]}, nil
}

type boltKV struct{ b *bolt.Bucket }

// packFull makes the bucket fill its pages before splitting them, for keys that arrive in
// ascending order (a snapshot): bbolt's default of half-full pages would write twice the
// pages and leave them half empty.
func (k boltKV) packFull() { k.b.FillPercent = 1.0 }

func (k boltKV) get(key []byte) []byte   { return k.b.Get(key) }
func (k boltKV) put(key, v []byte) error { return k.b.Put(key, v) }
func (k boltKV) del(key []byte) error    { return k.b.Delete(key) }

func (k boltKV) putKey(key string, v []byte) error { return k.b.Put([]byte(key), v) }
func (k boltKV) delKey(key string) error           { return k.b.Delete([]byte(key)) }

func (k boltKV) each(from []byte, fn func(k, v []byte) (bool, error)) error {
	c := k.b.Cursor()
	var key, v []byte
	if from == nil {
		key, v = c.First()
	} else {
		key, v = c.Seek(from)
	}
	for ; key != nil; key, v = c.Next() {
		more, err := fn(key, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// addMissingBuckets creates the sub-buckets a copy written by an older version lacks (the
// tickets bucket came later), so that a node upgrades in place: an empty bucket is exactly
// the state of a copy that never saw the entries that fill it.
func (s *boltStore) addMissingBuckets(name []byte) error { return addMissingBuckets(s.db, name) }

func addMissingBuckets(db *bolt.DB, name []byte) error {
	missing := false
	if err := db.View(func(tx *bolt.Tx) error {
		top := tx.Bucket(name)
		for _, sub := range subBucketNames {
			missing = missing || (top != nil && top.Bucket([]byte(sub)) == nil)
		}
		return nil
	}); err != nil || !missing {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		top := tx.Bucket(name)
		if top == nil {
			return nil // dropped meanwhile; the next transaction reports ErrNoCopy
		}
		for _, sub := range subBucketNames {
			if _, err := top.CreateBucketIfNotExists([]byte(sub)); err != nil {
				return fmt.Errorf("create bucket %s: %w", sub, err)
			}
		}
		return nil
	})
}
