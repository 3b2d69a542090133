package sqlite

import (
	"errors"

	sqlitedrv "modernc.org/sqlite"
)

// knownJobs is what the writer knows of the stored rows of active jobs (not
// in a terminal status) that it created or updated itself: what an update
// otherwise reads from the job's row first (jobStateSQL), which costs that
// update more than its own statements. It is the writer's alone, and it
// stays exact:
//   - an entry is set or removed once the statements of a write succeeded,
//     and the whole of it is dropped when a transaction is rolled back;
//   - another connection's commit (another process that opened the
//     database) drops it at the writer's next transaction, which sees it
//     in its connection's data version;
//   - ExpireJobs removes only jobs in a terminal status, which have no
//     entry, and drops theirs all the same.
//
// It holds at most maxKnownJobs entries; a job without one is read from its
// row as before.
type knownJobs struct {
	jobs map[string]knownJob
	// version is the data version of the writer's connection after its
	// last commit, valid when checked is set.
	version uint32
	checked bool
}

// knownJob is a job's stored state, as jobStateSQL reads it.
type knownJob struct {
	seq    int64
	status string
	ns     string
	bytes  int64 // result_bytes
	inline bool  // the result is in the jobs row
}

// maxKnownJobs bounds knownJobs: 65536 entries of about 100 bytes.
const maxKnownJobs = 1 << 16

func newKnownJobs() *knownJobs { return &knownJobs{jobs: make(map[string]knownJob)} }

// put records the stored state of job id after a write of it: an active
// job's is kept, a terminal job's forgotten.
func (k *knownJobs) put(id string, st knownJob) {
	if isTerminal(st.status) {
		delete(k.jobs, id)
		return
	}
	if _, ok := k.jobs[id]; ok || len(k.jobs) < maxKnownJobs {
		k.jobs[id] = st
	}
}

func (k *knownJobs) get(id string) (knownJob, bool) {
	st, ok := k.jobs[id]
	return st, ok
}

func (k *knownJobs) forget(id string) { delete(k.jobs, id) }

// drop forgets everything, after a rollback or another connection's commit.
func (k *knownJobs) drop() {
	clear(k.jobs)
	k.checked = false
}

// dataVersion is the data version of the writer's connection
// (SQLITE_FCNTL_DATA_VERSION): it changes with each of its own commits and
// when it sees, at the start of a transaction, that another connection
// committed.
func (s *Store) dataVersion() (v uint32, err error) {
	err = s.writeConn.Raw(func(dc any) error {
		fc, ok := dc.(sqlitedrv.FileControl)
		if !ok {
			return errors.New("the driver's connection has no file control")
		}
		v, err = fc.FileControlDataVersion("main")
		return err
	})
	return v, err
}

// begun drops what k knows when another connection committed since the
// writer's last commit: the writer calls it once its transaction has
// begun, holding the write lock, and committed once it has committed.
func (k *knownJobs) begun(s *Store) {
	v, err := s.dataVersion()
	if err != nil || !k.checked || v != k.version {
		k.drop()
	}
	k.checked = false
}

// committed records the data version after the writer's commit.
func (k *knownJobs) committed(s *Store) {
	v, err := s.dataVersion()
	if err != nil {
		k.drop()
		return
	}
	k.version, k.checked = v, true
}
