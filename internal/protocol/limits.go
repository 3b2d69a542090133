package protocol

import (
	"fmt"
	"maps"

	"github.com/zerverless/zerverless/internal/job"
)

// DefaultRegisterReadLimit is the largest message an orchestrator reads
// from a connection before its session is authenticated (the "register"
// frame): a few KiB, so that connections that never authenticate cannot
// make it hold more. A worker sends the lists that grow with its history
// (the builds it holds) in a "capabilities" message once registered.
const DefaultRegisterReadLimit = 16 << 10

// DeclarationLimits bound what a worker may declare about itself in
// "register" and "capabilities": the orchestrator keeps it for the whole
// session and shows it in its worker list. A message over a limit is
// refused with an error that names the field.
type DeclarationLimits struct {
	// MaxNameBytes bounds the worker's name and version (default 128).
	MaxNameBytes int
	// MaxNotes bounds the number of notes (default 32).
	MaxNotes int
	// MaxNoteBytes bounds one note, its key and text together (default
	// 1 KiB).
	MaxNoteBytes int
	// MaxListItems bounds each list of the capabilities: runtimes,
	// namespaces, allowed images, build keys, built images (default 256).
	MaxListItems int
	// MaxItemBytes bounds one item of those lists (default 256).
	MaxItemBytes int
}

// DefaultDeclarationLimits returns the documented defaults.
func DefaultDeclarationLimits() DeclarationLimits {
	return DeclarationLimits{MaxNameBytes: 128, MaxNotes: 32, MaxNoteBytes: 1 << 10, MaxListItems: 256, MaxItemBytes: 256}
}

// orDefault fills zero fields with the defaults.
func (l DeclarationLimits) orDefault() DeclarationLimits {
	d := DefaultDeclarationLimits()
	if l.MaxNameBytes <= 0 {
		l.MaxNameBytes = d.MaxNameBytes
	}
	if l.MaxNotes <= 0 {
		l.MaxNotes = d.MaxNotes
	}
	if l.MaxNoteBytes <= 0 {
		l.MaxNoteBytes = d.MaxNoteBytes
	}
	if l.MaxListItems <= 0 {
		l.MaxListItems = d.MaxListItems
	}
	if l.MaxItemBytes <= 0 {
		l.MaxItemBytes = d.MaxItemBytes
	}
	return l
}

// Check reports the first declaration of m over l, naming the field. Only
// "register" and "capabilities" declare anything.
func (l DeclarationLimits) Check(m *Message) error {
	if m.Type != TypeRegister && m.Type != TypeCapabilities {
		return nil
	}
	if len(m.Name) > l.MaxNameBytes {
		return fmt.Errorf("%s: name is %d bytes; at most %d are accepted", m.Type, len(m.Name), l.MaxNameBytes)
	}
	if len(m.Notes) > l.MaxNotes {
		return fmt.Errorf("%s: notes has %d entries; at most %d are accepted", m.Type, len(m.Notes), l.MaxNotes)
	}
	for k, v := range m.Notes {
		if len(k)+len(v) > l.MaxNoteBytes {
			return fmt.Errorf("%s: note %.40q is %d bytes; at most %d are accepted", m.Type, k, len(k)+len(v), l.MaxNoteBytes)
		}
	}
	c := m.Capabilities
	if c == nil {
		return nil
	}
	if len(c.Version) > l.MaxNameBytes {
		return fmt.Errorf("%s: capabilities.version is %d bytes; at most %d are accepted", m.Type, len(c.Version), l.MaxNameBytes)
	}
	if err := checkListOf(l, m.Type, "capabilities.runtimes", c.Runtimes); err != nil {
		return err
	}
	if err := checkListOf(l, m.Type, "capabilities.namespaces", c.Namespaces); err != nil {
		return err
	}
	if d := c.Docker; d != nil {
		for _, f := range []struct {
			name string
			list []string
		}{
			{"capabilities.docker.allow_images", d.AllowImages},
			{"capabilities.docker.build_cache", d.BuildCache},
			{"capabilities.docker.built_images", d.BuiltImages},
			{"capabilities.docker.egress", d.Egress},
			{"capabilities.docker.pool.warm_images", poolImages(d.Pool)},
		} {
			if err := checkListOf(l, m.Type, f.name, f.list); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkListOf[T ~string](l DeclarationLimits, typ Type, field string, list []T) error {
	if len(list) > l.MaxListItems {
		return fmt.Errorf("%s: %s has %d items; at most %d are accepted", typ, field, len(list), l.MaxListItems)
	}
	for i, s := range list {
		if len(s) > l.MaxItemBytes {
			return fmt.Errorf("%s: %s[%d] is %d bytes; at most %d are accepted", typ, field, i, len(s), l.MaxItemBytes)
		}
	}
	return nil
}

// FitNotes returns a copy of notes that DefaultDeclarationLimits accept:
// each note is cut to fit, and notes past the most accepted are dropped
// (the largest keys first, so that the same notes are kept each time).
func FitNotes(notes map[string]string) map[string]string {
	l := DefaultDeclarationLimits()
	out := maps.Clone(notes)
	for len(out) > l.MaxNotes {
		var last string
		for k := range out {
			if k > last {
				last = k
			}
		}
		delete(out, last)
	}
	for k, v := range out {
		if len(k) > l.MaxNoteBytes/2 {
			delete(out, k)
			continue
		}
		if room := l.MaxNoteBytes - len(k); len(v) > room {
			out[k] = truncateUTF8(v, room-len("…")) + "…"
		}
	}
	return out
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func poolImages(p *job.DockerPool) []string {
	if p == nil {
		return nil
	}
	return p.WarmImages
}
