package docker

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resource use is read from the container's cgroup while it runs, when
// the worker can see the engine's cgroups under Config.CgroupRoot: cgroup
// v1 memory.max_usage_in_bytes and cpuacct.usage, or cgroup v2
// memory.peak and cpu.stat, under the cgroupfs ("docker/<id>") or systemd
// ("system.slice/docker-<id>.scope") layouts. The kernel keeps the peak
// itself, so the peak is exact up to the last sample; CPU time is the last
// sample's, taken every 50 ms and when the output streams end, so a
// container that lives a few milliseconds may report none. This is best
// effort: nothing is reported where the cgroups are not visible (a worker
// in another container, a remote engine). The stats API was not used: it
// samples once a second and reports no peak on cgroup v2.

type usage struct {
	peakMemory int64
	cpuTime    time.Duration
	// oomKills counts the kernel's OOM kills in the cgroup (v1
	// memory.oom_control, v2 memory.events).
	oomKills int64
}

type sampler struct {
	mu    sync.Mutex
	u     usage
	read  func() (usage, bool) // nil until the cgroup is found
	root  string
	id    string
	done  chan struct{}
	ended chan struct{}
}

const sampleEvery = 50 * time.Millisecond

// startSampler samples container id's cgroup until stop, and once more
// when last closes (the output streams ending, as the container exits).
func (d *Docker) startSampler(id string, last <-chan struct{}) *sampler {
	s := &sampler{done: make(chan struct{}), ended: make(chan struct{}), root: d.cfg.CgroupRoot, id: id}
	if d.cfg.CgroupRoot == "" {
		close(s.ended)
		return s
	}
	go func() {
		defer close(s.ended)
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			s.sample()
			select {
			case <-s.done:
				return
			case <-last:
				last = nil
			case <-tick.C:
			}
		}
	}()
	return s
}

// sample reads the cgroup once, finding it first if need be.
func (s *sampler) sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.read == nil && s.root != "" {
		s.read = cgroupReader(s.root, s.id)
	}
	if s.read == nil {
		return
	}
	if u, ok := s.read(); ok {
		s.u.peakMemory = max(s.u.peakMemory, u.peakMemory)
		s.u.cpuTime = max(s.u.cpuTime, u.cpuTime)
		s.u.oomKills = max(s.u.oomKills, u.oomKills)
	}
}

// stop ends sampling, samples once more (a cgroup that is gone reads as
// nothing) and returns what was seen; visible says the cgroup was found,
// so that the OOM kills in it are known.
func (s *sampler) stop() (u usage, visible bool) {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	<-s.ended
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.u, s.read != nil
}

// cgroupReader finds container id's cgroup under root and returns a
// reader of its use, or nil when it is not visible.
func cgroupReader(root, id string) func() (usage, bool) {
	for _, rel := range []string{"docker/" + id, "system.slice/docker-" + id + ".scope"} {
		mem := filepath.Join(root, "memory", rel, "memory.max_usage_in_bytes")
		cpu := filepath.Join(root, "cpuacct", rel, "cpuacct.usage")
		if _, err := os.Stat(mem); err == nil {
			return func() (usage, bool) {
				m, err1 := readInt(mem)
				c, err2 := readInt(cpu)
				k, _ := readKeyed(filepath.Join(filepath.Dir(mem), "memory.oom_control"), "oom_kill")
				return usage{peakMemory: m, cpuTime: time.Duration(c), oomKills: k}, err1 == nil || err2 == nil
			}
		}
		dir := filepath.Join(root, rel)
		if _, err := os.Stat(filepath.Join(dir, "cpu.stat")); err == nil {
			return func() (usage, bool) {
				m, err1 := readInt(filepath.Join(dir, "memory.peak"))
				c, err2 := readKeyed(filepath.Join(dir, "cpu.stat"), "usage_usec")
				k, _ := readKeyed(filepath.Join(dir, "memory.events"), "oom_kill")
				return usage{peakMemory: m, cpuTime: time.Duration(c) * time.Microsecond, oomKills: k}, err1 == nil || err2 == nil
			}
		}
	}
	return nil
}

func readInt(name string) (int64, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// readKeyed reads the value of key in a "key value" per line file.
func readKeyed(name, key string) (int64, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, os.ErrNotExist
}
