package buildctx

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/zerverless/zerverless/internal/job"
)

// Policy is what a Dockerfile may do. Zero fields take DefaultPolicy's.
type Policy struct {
	// AllowImages are the job.MatchImage patterns base images must match;
	// empty allows any image. scratch, earlier stages and the job's own
	// namespace's built images are always allowed; another namespace's
	// built images never are.
	AllowImages []string
	// Namespace is the job's namespace.
	Namespace string
	// BuildArgs are the job's build arguments, used to resolve ARGs in FROM.
	BuildArgs map[string]string
	// MaxInstructions caps the instructions (default 100).
	MaxInstructions int
	// MaxBytes caps the Dockerfile (default 1 MiB).
	MaxBytes int
}

// DefaultPolicy returns the documented defaults: any base image, at most
// 100 instructions, 1 MiB.
func DefaultPolicy() Policy { return Policy{MaxInstructions: 100, MaxBytes: 1 << 20} }

// Dockerfile is what validation learned of a Dockerfile.
type Dockerfile struct {
	// BaseImages are the images the build starts from (FROM and COPY
	// --from), ARGs resolved, without scratch and stage names, in order
	// and without repeats.
	BaseImages []string
	// Instructions counts the instructions.
	Instructions int

	// res is the parse; refs the image reference of every FROM and COPY
	// --from, resolved, by node.
	res  *parser.Result
	refs map[*parser.Node]stageRef
}

// stageRef is what one FROM or COPY --from names once its variables are
// resolved: an image (BaseImages), a stage name or index, or scratch.
type stageRef struct {
	value string
	image bool
	flag  string // COPY: the --from flag as written
}

const dfField = "dockerfile"

func dfError(line int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		msg = fmt.Sprintf("line %d: %s", line, msg)
	}
	return job.Invalid(dfField, "%s", msg)
}

// allowedInstructions are the instructions a Dockerfile may use.
var allowedInstructions = map[string]bool{
	"from": true, "arg": true, "run": true, "copy": true, "add": true, "env": true,
	"label": true, "workdir": true, "user": true, "cmd": true, "entrypoint": true,
	"expose": true, "volume": true, "stopsignal": true, "healthcheck": true,
	"shell": true, "maintainer": true,
}

var urlRE = regexp.MustCompile(`(?i)^([a-z][a-z0-9+.-]*://|git@)`)

// CheckDockerfile parses src with BuildKit's parser and applies p. Every
// refusal is a *job.Error naming the dockerfile field and, where there is
// one, the line.
func CheckDockerfile(src string, p Policy) (Dockerfile, error) {
	d := DefaultPolicy()
	if p.MaxInstructions <= 0 {
		p.MaxInstructions = d.MaxInstructions
	}
	if p.MaxBytes <= 0 {
		p.MaxBytes = d.MaxBytes
	}
	if strings.TrimSpace(src) == "" {
		return Dockerfile{}, dfError(0, "is empty")
	}
	if len(src) > p.MaxBytes {
		return Dockerfile{}, dfError(0, "is %d bytes, over the limit of %d", len(src), p.MaxBytes)
	}
	if syntax, _, _, ok := parser.DetectSyntax([]byte(src)); ok {
		return Dockerfile{}, dfError(1, "the syntax directive (%q) is not supported: builds use the engine's own Dockerfile frontend", syntax)
	}
	res, err := parser.Parse(strings.NewReader(src))
	if err != nil {
		line := 0
		var le *parser.LocationError
		if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
			line = le.Locations[0][0].Start.Line
		}
		return Dockerfile{}, dfError(line, "syntax error: %v", errors.Unwrap(err))
	}
	v := &validator{p: p, args: map[string]*string{}, stages: map[string]bool{}, refs: map[*parser.Node]stageRef{}}
	nodes := res.AST.Children
	if len(nodes) > p.MaxInstructions {
		return Dockerfile{}, dfError(nodes[p.MaxInstructions].StartLine, "more than %d instructions", p.MaxInstructions)
	}
	for _, n := range nodes {
		if err := v.instruction(n); err != nil {
			return Dockerfile{}, err
		}
	}
	if v.froms == 0 {
		return Dockerfile{}, dfError(0, "has no FROM instruction")
	}
	return Dockerfile{BaseImages: v.bases, Instructions: len(nodes), res: res, refs: v.refs}, nil
}

type validator struct {
	p      Policy
	args   map[string]*string // global ARGs (before the first FROM)
	stages map[string]bool
	froms  int
	bases  []string
	refs   map[*parser.Node]stageRef
}

func (v *validator) instruction(n *parser.Node) error {
	cmd := strings.ToLower(n.Value)
	line := n.StartLine
	if !allowedInstructions[cmd] {
		if cmd == "onbuild" {
			return dfError(line, "ONBUILD is not allowed")
		}
		return dfError(line, "unknown instruction %s", strings.ToUpper(n.Value))
	}
	if v.froms == 0 && cmd != "from" && cmd != "arg" {
		return dfError(line, "%s before the first FROM; only ARG may come before it", strings.ToUpper(cmd))
	}
	if len(n.Heredocs) > 0 {
		return dfError(line, "heredocs are not supported by the builder")
	}
	args := nodeArgs(n)
	switch cmd {
	case "from":
		return v.from(n, args)
	case "arg":
		if v.froms > 0 {
			return noFlags(n)
		}
		for _, a := range args {
			name, val, hasVal := strings.Cut(a, "=")
			if hasVal {
				val = strings.Trim(val, `"'`)
				v.args[name] = &val
			} else {
				v.args[name] = nil
			}
		}
		return noFlags(n)
	case "run":
		for _, f := range n.Flags {
			name := flagName(f)
			switch name {
			case "mount", "network", "security":
				return dfError(line, "RUN --%s is not allowed", name)
			}
			return dfError(line, "RUN option --%s is not supported", name)
		}
	case "add":
		for _, f := range n.Flags {
			switch name := flagName(f); name {
			case "chown", "chmod":
			default:
				return dfError(line, "ADD --%s is not allowed", name)
			}
		}
		if len(args) > 0 {
			for _, src := range args[:len(args)-1] {
				// The engine itself fetches a URL source, outside the
				// build's network: a variable could become one.
				if strings.Contains(src, "$") {
					return dfError(line, "ADD %s: variables are not allowed in ADD sources; use COPY", src)
				}
				if urlRE.MatchString(src) {
					return dfError(line, "ADD from a URL (%s) is not allowed: builds have no network; put the file in the build context", src)
				}
			}
		}
	case "copy":
		for _, f := range n.Flags {
			name := flagName(f)
			switch name {
			case "chown", "chmod":
			case "from":
				if err := v.copyFrom(n, f); err != nil {
					return err
				}
			default:
				return dfError(line, "COPY --%s is not allowed", name)
			}
		}
	default:
		if cmd != "healthcheck" {
			return noFlags(n)
		}
	}
	return nil
}

func noFlags(n *parser.Node) error {
	if len(n.Flags) > 0 {
		return dfError(n.StartLine, "%s takes no option %s", strings.ToUpper(n.Value), n.Flags[0])
	}
	return nil
}

func (v *validator) from(n *parser.Node, args []string) error {
	line := n.StartLine
	for _, f := range n.Flags {
		if flagName(f) != "platform" {
			return dfError(line, "FROM option %s is not allowed", f)
		}
		if strings.Contains(f, "$") {
			return dfError(line, "FROM %s: variables are not allowed in --platform", f)
		}
	}
	if len(args) != 1 && !(len(args) == 3 && strings.EqualFold(args[1], "as")) {
		return dfError(line, "FROM takes an image and optionally AS name")
	}
	if len(args) == 3 && !stageNameRE.MatchString(args[2]) {
		return dfError(line, "FROM ... AS %s: a stage name is a letter followed by letters, digits, '_', '-' or '.'", args[2])
	}
	v.froms++
	ref, err := v.expand(args[0])
	if err != nil {
		return dfError(line, "FROM %s: %v", args[0], err)
	}
	image, err := v.base(line, ref)
	if err != nil {
		return err
	}
	v.refs[n] = stageRef{value: ref, image: image}
	if len(args) == 3 {
		v.stages[strings.ToLower(args[2])] = true
	}
	return nil
}

var stageNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]*$`)

func (v *validator) copyFrom(n *parser.Node, flag string) error {
	from := flagValue(flag)
	if _, dup := v.refs[n]; dup {
		return dfError(n.StartLine, "COPY takes --from once")
	}
	if i, err := strconv.Atoi(from); err == nil {
		if i < 0 || i >= v.froms-1 || strconv.Itoa(i) != from {
			return dfError(n.StartLine, "COPY --from=%s: not an earlier stage", from)
		}
		v.refs[n] = stageRef{value: from, flag: flag}
		return nil
	}
	ref, err := v.expand(from)
	if err != nil {
		return dfError(n.StartLine, "COPY --from=%s: %v", from, err)
	}
	image, err := v.base(n.StartLine, ref)
	if err != nil {
		return err
	}
	v.refs[n] = stageRef{value: ref, image: image, flag: flag}
	return nil
}

// base checks one image the build starts from; it reports whether ref
// names an image (not scratch, not an earlier stage).
func (v *validator) base(line int, ref string) (bool, error) {
	lower := strings.ToLower(ref)
	if lower == "scratch" || v.stages[lower] {
		return false, nil
	}
	if err := job.ValidateImageRef(ref); err != nil {
		return false, dfError(line, "base image: %v", err)
	}
	if ns, built := job.ImageNamespace(ref); built {
		if ns != v.p.Namespace {
			return false, dfError(line, "base image %s belongs to another namespace", ref)
		}
	} else if len(v.p.AllowImages) > 0 && !job.MatchImage(v.p.AllowImages, ref) {
		return false, dfError(line, "base image %s is not allowed (allowed: %s)", ref, strings.Join(v.p.AllowImages, ", "))
	}
	if !slices.Contains(v.bases, ref) {
		v.bases = append(v.bases, ref)
	}
	return true, nil
}

var varRE = regexp.MustCompile(`\$(\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)`)

// expand resolves $NAME, ${NAME}, ${NAME:-default} and ${NAME-default}
// from the global ARGs and the build arguments. Anything else with a $
// is refused rather than guessed at.
func (v *validator) expand(s string) (string, error) {
	var bad error
	out := varRE.ReplaceAllStringFunc(s, func(m string) string {
		expr := strings.TrimPrefix(m, "$")
		braced := strings.HasPrefix(expr, "{")
		expr = strings.TrimSuffix(strings.TrimPrefix(expr, "{"), "}")
		name, def, hasDef := expr, "", false
		if braced {
			if i := strings.Index(expr, ":-"); i >= 0 {
				name, def, hasDef = expr[:i], expr[i+2:], true
			} else if i := strings.IndexByte(expr, '-'); i >= 0 {
				name, def, hasDef = expr[:i], expr[i+1:], true
			}
		}
		if !buildArgName(name) {
			bad = fmt.Errorf("cannot resolve %s", m)
			return m
		}
		val, declared := v.args[name]
		if !declared {
			if hasDef {
				return def
			}
			bad = fmt.Errorf("%s is not a global ARG (declare it before the first FROM)", name)
			return m
		}
		if a, ok := v.p.BuildArgs[name]; ok {
			return a
		}
		if val != nil && *val != "" {
			return *val
		}
		if hasDef {
			return def
		}
		bad = fmt.Errorf("ARG %s has no value; pass it in build_args", name)
		return m
	})
	if bad != nil {
		return "", bad
	}
	if strings.ContainsAny(out, "$\\") {
		return "", fmt.Errorf("cannot resolve %q", s)
	}
	return out, nil
}

var argNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func buildArgName(s string) bool { return argNameRE.MatchString(s) }

func nodeArgs(n *parser.Node) []string {
	var out []string
	for a := n.Next; a != nil; a = a.Next {
		out = append(out, a.Value)
	}
	return out
}

// flagName returns "mount" for "--mount=type=cache".
func flagName(f string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
	return strings.ToLower(name)
}

func flagValue(f string) string {
	_, val, _ := strings.Cut(f, "=")
	return val
}
