package buildctx

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Pinning.
//
// A builder substitutes variables in FROM and COPY --from on its own
// terms (the engine's: its predefined proxy arguments, HTTP_PROXY,
// no_proxy, …, apply there without an ARG), where the validator resolves
// ${X:-default} to the default. Whatever the two disagree on, a build
// must start from the image the policy checked, so the worker builds a
// pinned Dockerfile: every FROM and COPY --from names its image by id (or
// its stage, resolved, or scratch), with no variable left for the builder
// to resolve. Every other instruction is kept as it was parsed.

// Pin returns the Dockerfile to build: d's instructions, with
// every image that FROM and COPY --from resolved to (each of BaseImages)
// replaced by ids[image], a full "sha256:<hex>" image id, and every stage
// reference written resolved. It fails when an image has no id in ids,
// or when the pinned text does not parse back to the same instructions
// with exactly those ids (see PinnedImages).
func (d Dockerfile) Pin(ids map[string]string) (string, error) {
	if d.res == nil {
		return "", fmt.Errorf("pin: the Dockerfile was not checked")
	}
	var b strings.Builder
	if d.res.EscapeToken != '\\' {
		fmt.Fprintf(&b, "# escape=%c\n", d.res.EscapeToken)
	}
	want := map[string]bool{}
	for _, n := range d.res.AST.Children {
		r, ok := d.refs[n]
		value := r.value
		if ok && r.image {
			id := ids[r.value]
			if !imageIDFullRE.MatchString(id) {
				return "", fmt.Errorf("pin: no image id for %s", r.value)
			}
			value, want[id] = id, true
		}
		switch {
		case !ok:
			b.WriteString(n.Original)
		case strings.EqualFold(n.Value, "from"):
			b.WriteString("FROM")
			for _, f := range n.Flags {
				b.WriteString(" " + f)
			}
			b.WriteString(" " + value)
			if args := nodeArgs(n); len(args) == 3 {
				b.WriteString(" AS " + args[2])
			}
		default: // COPY --from
			i := strings.Index(n.Original, r.flag)
			if i < 0 {
				return "", fmt.Errorf("line %d: pin: cannot find %s", n.StartLine, r.flag)
			}
			b.WriteString(n.Original[:i] + "--from=" + value + n.Original[i+len(r.flag):])
		}
		b.WriteByte('\n')
	}
	pinned := b.String()
	if err := d.samePinned(pinned, want); err != nil {
		return "", fmt.Errorf("pin: %w", err)
	}
	return pinned, nil
}

// samePinned checks that pinned parses to d's instructions, FROM and COPY
// --from aside, and that those name exactly the images of want.
func (d Dockerfile) samePinned(pinned string, want map[string]bool) error {
	res, err := parser.Parse(strings.NewReader(pinned))
	if err != nil {
		return err
	}
	orig, got := d.res.AST.Children, res.AST.Children
	if len(orig) != len(got) {
		return fmt.Errorf("%d instructions instead of %d", len(got), len(orig))
	}
	for i, n := range orig {
		if _, pinnedNode := d.refs[n]; pinnedNode {
			if !strings.EqualFold(n.Value, got[i].Value) {
				return fmt.Errorf("line %d: %s became %s", n.StartLine, n.Value, got[i].Value)
			}
			continue
		}
		if n.Dump() != got[i].Dump() {
			return fmt.Errorf("line %d: parses differently once pinned", n.StartLine)
		}
	}
	images, err := PinnedImages(pinned)
	if err != nil {
		return err
	}
	for _, id := range images {
		if !want[id] {
			return fmt.Errorf("names %s, which is not a checked image", id)
		}
	}
	return nil
}

var imageIDFullRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// PinnedImages returns the image ids that the FROM and COPY --from
// instructions of a pinned Dockerfile name, in order, without repeats. It
// fails unless each of them is scratch, an earlier stage's name or index,
// or a full "sha256:<hex>" image id, with nothing a builder could
// substitute.
func PinnedImages(src string) ([]string, error) {
	res, err := parser.Parse(strings.NewReader(src))
	if err != nil {
		return nil, err
	}
	stages := map[string]bool{}
	froms := 0
	var ids []string
	check := func(line int, ref string) error {
		lower := strings.ToLower(ref)
		switch {
		case strings.ContainsAny(ref, "$\\"):
			return fmt.Errorf("line %d: %q is not resolved", line, ref)
		case lower == "scratch" || stages[lower]:
		case imageIDFullRE.MatchString(ref):
			if !slices.Contains(ids, ref) {
				ids = append(ids, ref)
			}
		default:
			if i, ok := stageIndex(ref); ok && i < froms-1 {
				return nil
			}
			return fmt.Errorf("line %d: %q is neither a stage nor an image id", line, ref)
		}
		return nil
	}
	for _, n := range res.AST.Children {
		switch strings.ToLower(n.Value) {
		case "from":
			froms++
			args := nodeArgs(n)
			if len(args) == 0 {
				return nil, fmt.Errorf("line %d: FROM without an image", n.StartLine)
			}
			for _, f := range n.Flags {
				if strings.Contains(f, "$") {
					return nil, fmt.Errorf("line %d: %s is not resolved", n.StartLine, f)
				}
			}
			if err := check(n.StartLine, args[0]); err != nil {
				return nil, err
			}
			if len(args) == 3 {
				stages[strings.ToLower(args[2])] = true
			}
		case "copy", "add", "run":
			for _, f := range n.Flags {
				switch flagName(f) {
				case "from":
					if err := check(n.StartLine, flagValue(f)); err != nil {
						return nil, err
					}
				case "mount":
					return nil, fmt.Errorf("line %d: RUN --mount", n.StartLine)
				}
			}
		case "onbuild":
			return nil, fmt.Errorf("line %d: ONBUILD", n.StartLine)
		}
	}
	return ids, nil
}

func stageIndex(s string) (int, bool) {
	if s == "" || len(s) > 3 || strings.TrimLeft(s, "0123456789") != "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	i := 0
	for _, c := range s {
		i = i*10 + int(c-'0')
	}
	return i, true
}
