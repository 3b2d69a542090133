package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/docker/docker/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// COPY and ADD.
//
// The files a COPY selects come from a tree: the build context (without
// the files its .dockerignore names, the .dockerignore itself and the
// Dockerfile the worker adds), or the filesystem of a stage or a checked
// image, read through CopyFromContainer. Names in a tree are paths
// without a leading slash. Each source is a path or a pattern of
// path.Match (matched against every path of the tree); a directory is
// copied by its content, a file to dest, or into dest when dest ends in a
// slash, names a directory of the image, or there are several sources.
// Every copied entry belongs to root, or to the --chown user and group;
// --chmod sets every entry's mode. ADD unpacks a local file that is a tar
// archive (plain, gzip or bzip2) into dest instead of copying it.

// walkTree calls fn for each entry of a tree, in order.
type walkTree func(fn func(h *tar.Header, r io.Reader) error) error

func (x *executor) contextTree() walkTree {
	return func(fn func(h *tar.Header, r io.Reader) error) error {
		if _, err := x.ctxFile.Seek(0, io.SeekStart); err != nil {
			return err
		}
		tr := tar.NewReader(x.ctxFile)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			name := strings.TrimSuffix(h.Name, "/")
			if name == ".dockerignore" {
				continue
			}
			if x.ignore != nil {
				if m, _ := x.ignore.MatchesOrParentMatches(name); m {
					continue
				}
			}
			h.Name = name
			if err := fn(h, tr); err != nil {
				return err
			}
		}
	}
}

// imageTree reads the paths that srcs need from a container of image.
func (x *executor) imageTree(ctx context.Context, image string, srcs []string) (walkTree, func(), error) {
	id, err := x.create(ctx, &stageState{image: image}, []string{"/none"}, nil)
	if err != nil {
		return nil, nil, err
	}
	var fetch []string
	for _, s := range srcs {
		p := path.Clean("/" + s)
		if hasGlob(p) {
			p = path.Dir(p)
		}
		fetch = append(fetch, p)
	}
	walk := func(fn func(h *tar.Header, r io.Reader) error) error {
		for _, p := range fetch {
			rc, _, err := x.d.engine.CopyFromContainer(ctx, id, p)
			if err != nil {
				if errdefs.IsNotFound(err) {
					continue
				}
				return err
			}
			parent := strings.TrimPrefix(path.Dir(p), "/")
			tr := tar.NewReader(rc)
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					rc.Close()
					return err
				}
				h.Name = strings.TrimPrefix(path.Join(parent, strings.TrimSuffix(h.Name, "/")), "/")
				if err := fn(h, tr); err != nil {
					rc.Close()
					return err
				}
			}
			rc.Close()
		}
		return nil
	}
	return walk, func() { x.remove(id) }, nil
}

func hasGlob(s string) bool { return strings.ContainsAny(s, "*?[") }

type copyRoot struct {
	name string
	dir  bool
}

// copy runs a COPY or ADD.
func (x *executor) copy(ctx context.Context, st *stageState, sd instructions.SourcesAndDest, from, chown, chmod string, add bool) error {
	if len(sd.SourceContents) > 0 {
		return stepFail("step %d: heredocs are not supported", x.step)
	}
	tree := x.contextTree()
	if from != "" {
		img := ""
		if s := x.stageByName(from); s != nil {
			img = s.image
		} else if imageIDFullRE.MatchString(from) {
			img = from
		} else {
			return stepFail("step %d: COPY --from=%s: neither an earlier stage nor a checked image", x.step, from)
		}
		t, done, err := x.imageTree(ctx, img, sd.SourcePaths)
		if err != nil {
			return err
		}
		defer done()
		tree = t
		add = false
	}
	// The first pass finds what each source names.
	kinds := map[string]byte{}
	if err := tree(func(h *tar.Header, _ io.Reader) error {
		kinds[h.Name] = h.Typeflag
		for p := path.Dir(h.Name); p != "." && p != "/" && p != ""; p = path.Dir(p) {
			if _, ok := kinds[p]; !ok {
				kinds[p] = tar.TypeDir
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("read sources: %w", err)
	}
	var roots []copyRoot
	for _, src := range sd.SourcePaths {
		clean := strings.TrimPrefix(path.Clean("/"+src), "/")
		if hasGlob(clean) {
			n := 0
			for _, name := range sortedKeys(kinds) {
				if ok, _ := path.Match(clean, name); ok {
					roots = append(roots, copyRoot{name, kinds[name] == tar.TypeDir})
					n++
				}
			}
			if n == 0 {
				return stepFail("step %d: no source files were specified: %s matches nothing", x.step, src)
			}
			continue
		}
		if clean == "" {
			roots = append(roots, copyRoot{"", true})
			continue
		}
		k, ok := kinds[clean]
		if !ok {
			return stepFail("step %d: %s: no such file or directory", x.step, src)
		}
		roots = append(roots, copyRoot{clean, k == tar.TypeDir})
	}
	dest := sd.DestPath
	if !path.IsAbs(dest) {
		wd := st.cfg.WorkingDir
		if wd == "" {
			wd = "/"
		}
		slash := strings.HasSuffix(dest, "/") || dest == "." || dest == ""
		dest = path.Join(wd, dest)
		if slash {
			dest += "/"
		}
	}
	destDir := strings.HasSuffix(dest, "/") || len(roots) > 1
	if len(roots) > 1 && !strings.HasSuffix(dest, "/") {
		return stepFail("step %d: when copying several sources, the destination must be a directory and end with a /", x.step)
	}
	dest = path.Clean(dest)
	if !destDir && !roots[0].dir && x.isDirDest(ctx, st, dest) {
		destDir = true
	}
	uid, gid, err := x.owner(ctx, st, chown)
	if err != nil {
		return err
	}
	var mode int64 = -1
	if chmod != "" {
		m, err := strconv.ParseUint(chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return stepFail("step %d: --chmod=%s: not an octal mode", x.step, chmod)
		}
		mode = int64(m)
	}
	source := "context " + x.contextDigest
	if from != "" {
		source = "image " + x.stageByName(from).imageOr(from)
	}
	if x.cached(ctx, st, "copy", add, sd.SourcePaths, sd.DestPath, uid, gid, mode, source, destDir) {
		return nil
	}
	rel := func(target string) string { return strings.TrimPrefix(target, "/") }
	return x.writeFiles(ctx, st, func(tw *tar.Writer) error {
		header := func(h *tar.Header, target string) *tar.Header {
			out := &tar.Header{Name: rel(target), Typeflag: h.Typeflag, Mode: h.Mode & 0o7777, Size: h.Size,
				Linkname: h.Linkname, ModTime: h.ModTime, Uid: uid, Gid: gid, Format: tar.FormatPAX}
			if mode >= 0 {
				out.Mode = mode
			}
			if out.Typeflag == tar.TypeDir {
				out.Name += "/"
				out.Size = 0
			}
			return out
		}
		for _, r := range roots {
			if r.dir {
				if err := tw.WriteHeader(header(&tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}, dest)); err != nil {
					return err
				}
			}
		}
		return tree(func(h *tar.Header, body io.Reader) error {
			if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir && h.Typeflag != tar.TypeSymlink {
				return nil
			}
			type target struct {
				name string
				file bool // a file source, not a directory's content
			}
			var targets []target
			for _, r := range roots {
				switch {
				case r.dir && r.name == "":
					targets = append(targets, target{path.Join(dest, h.Name), false})
				case r.dir && h.Name == r.name:
					// its header was written
				case r.dir && strings.HasPrefix(h.Name, r.name+"/"):
					targets = append(targets, target{path.Join(dest, strings.TrimPrefix(h.Name, r.name+"/")), false})
				case !r.dir && h.Name == r.name:
					name := dest
					if destDir {
						name = path.Join(dest, path.Base(r.name))
					}
					targets = append(targets, target{name, true})
				}
			}
			first := ""
			for _, tg := range targets {
				if add && tg.file && h.Typeflag == tar.TypeReg {
					// A context file, within the context's size limit.
					buf, err := io.ReadAll(body)
					if err != nil {
						return err
					}
					body = bytes.NewReader(buf)
					if ok, err := unpackArchive(tw, buf, dest, uid, gid, chown != ""); ok || err != nil {
						return err
					}
				}
				out := header(h, tg.name)
				if first != "" && h.Typeflag == tar.TypeReg {
					// The same entry again: a link to its first copy, so
					// that it is read once and never held in memory.
					out.Typeflag, out.Linkname, out.Size = tar.TypeLink, first, 0
				}
				if err := tw.WriteHeader(out); err != nil {
					return err
				}
				if out.Typeflag == tar.TypeReg {
					if _, err := io.Copy(tw, body); err != nil {
						return err
					}
					first = out.Name
				}
			}
			return nil
		})
	})
}

// unpackArchive writes the entries of data, when it is a tar archive
// (plain, gzip or bzip2), under dest; it reports whether it was one.
func unpackArchive(tw *tar.Writer, data []byte, dest string, uid, gid int, chown bool) (bool, error) {
	var r io.Reader = bytes.NewReader(data)
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		gz, err := gzip.NewReader(r)
		if err != nil {
			return false, nil
		}
		r = gz
	case bytes.HasPrefix(data, []byte("BZh")):
		r = bzip2.NewReader(r)
	}
	br := bufio.NewReader(r)
	head, _ := br.Peek(262)
	if len(head) < 262 || !bytes.Equal(head[257:262], []byte("ustar")) {
		return false, nil
	}
	tr := tar.NewReader(br)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return true, stepFail("ADD: %v", err)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir && h.Typeflag != tar.TypeSymlink {
			continue
		}
		out := &tar.Header{Name: strings.TrimPrefix(path.Join(dest, path.Clean("/"+h.Name)), "/"), Typeflag: h.Typeflag,
			Mode: h.Mode & 0o7777, Size: h.Size, Linkname: h.Linkname, ModTime: h.ModTime, Uid: h.Uid, Gid: h.Gid, Format: tar.FormatPAX}
		if chown {
			out.Uid, out.Gid = uid, gid
		}
		if out.Typeflag == tar.TypeDir {
			out.Name, out.Size = out.Name+"/", 0
		} else if out.Typeflag != tar.TypeReg {
			out.Size = 0
		}
		if err := tw.WriteHeader(out); err != nil {
			return true, err
		}
		if out.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return true, err
			}
		}
	}
}

// owner resolves --chown=user[:group] in st's image: numbers as they are,
// names by its /etc/passwd and /etc/group.
func (x *executor) owner(ctx context.Context, st *stageState, chown string) (int, int, error) {
	if chown == "" {
		return 0, 0, nil
	}
	user, group, hasGroup := strings.Cut(chown, ":")
	var passwd, groups []byte
	read := func(file string) []byte {
		id, err := x.create(ctx, st, []string{"/none"}, nil)
		if err != nil {
			return nil
		}
		defer x.remove(id)
		rc, _, err := x.d.engine.CopyFromContainer(ctx, id, file)
		if err != nil {
			return nil
		}
		defer rc.Close()
		tr := tar.NewReader(rc)
		if _, err := tr.Next(); err != nil {
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(tr, 1<<20))
		return b
	}
	lookup := func(db []byte, name string) (int, int, bool) {
		for line := range strings.SplitSeq(string(db), "\n") {
			f := strings.Split(line, ":")
			if len(f) >= 3 && f[0] == name {
				id, err := strconv.Atoi(f[2])
				gid := -1
				if len(f) >= 4 {
					if g, err := strconv.Atoi(f[3]); err == nil {
						gid = g
					}
				}
				return id, gid, err == nil
			}
		}
		return 0, 0, false
	}
	uid, err := strconv.Atoi(user)
	gid := uid
	if err != nil {
		passwd = read("/etc/passwd")
		u, g, ok := lookup(passwd, user)
		if !ok {
			return 0, 0, stepFail("step %d: --chown=%s: no user %s in the image", x.step, chown, user)
		}
		uid, gid = u, g
	}
	if hasGroup {
		g, err := strconv.Atoi(group)
		if err != nil {
			groups = read("/etc/group")
			var ok bool
			g, _, ok = lookup(groups, group)
			if !ok {
				return 0, 0, stepFail("step %d: --chown=%s: no group %s in the image", x.step, chown, group)
			}
		}
		gid = g
	}
	if uid < 0 || gid < 0 {
		return 0, 0, stepFail("step %d: --chown=%s: not a user and group", x.step, chown)
	}
	return uid, gid, nil
}

// imageOr is the image of stage s, or ref when s is nil.
func (s *stageState) imageOr(ref string) string {
	if s == nil {
		return ref
	}
	return s.image
}
