package job

import (
	"path"
	"strings"
)

// MatchImage reports whether image matches one of patterns. A pattern is a
// path.Match glob over the reference as written ("alpine:*",
// "127.0.0.1:5000/*"); a pattern ending in "/*" or "/**" also matches every
// repository below that prefix, and a pattern without a tag or digest
// matches every tag and digest of that repository.
func MatchImage(patterns []string, image string) bool {
	repo := imageRepo(image)
	for _, p := range patterns {
		if p == "*" || p == "**" {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "/**"); ok && strings.HasPrefix(image, prefix+"/") {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "/*"); ok && strings.HasPrefix(image, prefix+"/") {
			return true
		}
		if ok, _ := path.Match(p, image); ok {
			return true
		}
		if ok, _ := path.Match(p, repo); ok {
			return true
		}
	}
	return false
}

// imageRepo returns image without its tag or digest.
func imageRepo(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	slash := strings.LastIndexByte(image, '/')
	if i := strings.LastIndexByte(image, ':'); i > slash {
		image = image[:i]
	}
	return image
}
