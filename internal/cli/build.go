package cli

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/zerverless/zerverless/internal/client"
	"github.com/zerverless/zerverless/internal/job"
)

const buildUsage = `usage: zerverless build [flags] DIR [-- CMD [ARG...]]

Builds DIR (its Dockerfile, and the files .dockerignore does not exclude)
into an image on a worker that builds images, then runs CMD in it (or the
image's own command). The image is tagged zerverless/<namespace>/<name>:<tag>.

  -t, --tag NAME[:TAG]      image_tag (default: a name from the build's inputs)
  --build-arg K=V           a build argument (repeatable)
  --only                    build only: print the tag and the image id
  -f, --file PATH           the Dockerfile, relative to DIR (default Dockerfile)
  --namespace NS            the job's namespace (default "default")
  --timeout SECONDS         the run's timeout
  --build-timeout SECONDS   the build's timeout (default 600)
  --json                    print the finished job as JSON
  --server URL              the orchestrator (env ZERVERLESS_SERVER)
  --token TOKEN             API token (default $ZERVERLESS_TOKEN, or DIR/admin.token)
  --data DIR                data dir of a local orchestrator (default $ZERVERLESS_DATA, or ./zerverless-data)
`

func (c *command) build(ctx context.Context, args []string) int {
	var (
		tag, file, ns, timeout, buildTimeout string
		only, asJSON                         bool
		buildArgs                            envFlag
	)
	fs := c.flags()
	fs.StringVar(&tag, "t", "", "")
	fs.StringVar(&tag, "tag", "", "")
	fs.Var(&buildArgs, "build-arg", "")
	fs.BoolVar(&only, "only", false, "")
	fs.StringVar(&file, "f", "Dockerfile", "")
	fs.StringVar(&file, "file", "Dockerfile", "")
	fs.StringVar(&ns, "namespace", "", "")
	fs.StringVar(&timeout, "timeout", "", "")
	fs.StringVar(&buildTimeout, "build-timeout", "", "")
	fs.BoolVar(&asJSON, "json", false, "")
	pos, status, ok := c.parse(fs, args, buildUsage, true)
	if !ok {
		return status
	}
	if len(pos) == 0 {
		return c.usageError("a directory to build is required")
	}
	dir, cmd := pos[0], pos[1:]
	if only && len(cmd) > 0 {
		return c.usageError("--only builds without running; give no command")
	}
	req := job.Request{Type: job.TypeDocker, Namespace: ns, ImageTag: tag, BuildArgs: buildArgs.m,
		BuildOnly: only, DockerCommand: cmd, Dockerfile: filepath.ToSlash(filepath.Clean(file))}
	for name, v := range map[string]string{"timeout": timeout, "build-timeout": buildTimeout} {
		if v == "" {
			continue
		}
		secs, err := parseSeconds(v)
		if err != nil {
			return c.usageError("--%s: %v", name, err)
		}
		if name == "timeout" {
			req.TimeoutSeconds = &secs
		} else {
			req.BuildTimeoutSeconds = &secs
		}
	}
	if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
		return c.usageError("%v", err)
	}

	cl := c.client()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContext(pw, dir, file)) }()
	up, err := cl.UploadContext(ctx, pr, "application/gzip")
	pr.Close()
	if err != nil {
		return c.fail(ExitDockerError, "upload %s to %s: %v", dir, cl.BaseURL(), describe(err))
	}
	fmt.Fprintf(c.stderr, "zerverless: uploaded %s: %d files, %d bytes (build context %s)\n", dir, up.Files, up.Bytes, up.BuildContextID[:12])
	req.BuildContextID = up.BuildContextID
	var v client.View
	if asJSON {
		// Nothing to follow: the submission waits for the job a while in
		// its own request.
		v, err = cl.Run(ctx, req, pendingNotice)
	} else {
		v, err = cl.Submit(ctx, req)
	}
	if err != nil {
		if ctx.Err() != nil {
			return c.fail(ExitInterrupted, "stopped before the submission was answered; the job goes on if it was accepted (zerverless jobs lists it)")
		}
		return c.fail(ExitDockerError, "submit to %s: %v%s", cl.BaseURL(), describe(err), mayBeAccepted(err))
	}
	id := v.ID
	var live *logPrinter
	if asJSON {
		v, err = c.awaitAfterNotice(ctx, cl, v)
	} else {
		v, live, err = c.followOutput(ctx, cl, id)
	}
	if err != nil {
		if ctx.Err() != nil {
			return c.fail(ExitInterrupted, "stopped waiting; job %s goes on (zerverless cancel %s stops it)", id, id)
		}
		return c.fail(ExitDockerError, "wait for job %s at %s: %v", id, cl.BaseURL(), describe(err))
	}
	if asJSON {
		c.printJSON(v)
		return c.jobStatus(v)
	}
	c.printBuild(v, only, live != nil)
	switch {
	case !only && live != nil:
		live.printRest(v)
	case !only:
		c.printOutput(v)
	case v.Status != job.StatusCompleted:
		c.printOutput(client.View{ID: v.ID, Status: v.Status, Reason: v.Reason, ResultView: v.ResultView})
	}
	return c.jobStatus(v)
}

// printBuild reports the build: its tag, image id, whether it was a cache
// hit, and its log when it failed.
func (c *command) printBuild(v client.View, only, streamed bool) {
	if v.ResultView == nil || v.Build == nil {
		return
	}
	b := v.Build
	if b.ImageID == "" {
		if !streamed { // a streamed log was printed as it came
			fmt.Fprint(c.stderr, b.Log)
		}
		return
	}
	how := "built"
	if b.CacheHit {
		how = "cache hit"
	}
	fmt.Fprintf(c.stderr, "zerverless: %s %s (%s, %d ms)\n", how, b.Image, b.ImageID, b.DurationMS)
	if only {
		fmt.Fprintf(c.stdout, "%s\n%s\n", b.Image, b.ImageID)
	}
}

// writeContext writes dir as a gzip-compressed tar, leaving out what its
// .dockerignore excludes (never the Dockerfile). Regular files,
// directories and symlinks are sent; any other kind of file is an error.
func writeContext(w io.Writer, dir, dockerfile string) error {
	var pm *patternmatcher.PatternMatcher
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		patterns, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return fmt.Errorf(".dockerignore: %w", err)
		}
		if pm, err = patternmatcher.New(patterns); err != nil {
			return fmt.Errorf(".dockerignore: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	keep := filepath.ToSlash(filepath.Clean(dockerfile))
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if pm != nil && rel != keep && rel != ".dockerignore" {
			skip, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return err
			}
			if skip {
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: rel, ModTime: info.ModTime(), Mode: int64(info.Mode().Perm())}
		switch {
		case info.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, info.Size()
		case info.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, rel+"/"
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
		default:
			return fmt.Errorf("%s: only files, directories and symlinks can be sent (exclude it in .dockerignore)", rel)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, h.Size)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
