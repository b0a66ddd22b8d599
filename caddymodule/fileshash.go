package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/caddyserver/caddy/v2"
)

// maxHashedFiles bounds the files the digest of a config's files reads (a policy
// directory holds a handful; a path pointed at / by mistake must not walk the disk).
const maxHashedFiles = 10000

// configFiles lists the files and directories the config loads at provisioning: the
// target's mapping, the policy directory and its extra data files.
func (g *Handler) configFiles() []string {
	var paths []string
	if g.Target != nil && g.Target.Mapping != "" {
		paths = append(paths, g.Target.Mapping)
	}
	if g.Policy != nil {
		if g.Policy.Dir != "" {
			paths = append(paths, g.Policy.Dir)
		}
		paths = append(paths, g.Policy.Data...)
	}
	return paths
}

// filesDigest is the hex SHA-256 of the contents of the files at paths (a directory: every
// regular file below it, in lexical order), with their names; placeholders in the paths are
// resolved. A path that cannot be read counts as unreadable (provisioning reports why); ""
// when no file could be read.
func filesDigest(paths []string) string {
	repl := caddy.NewReplacer()
	h := sha256.New()
	files := 0
	for _, p := range paths {
		p = repl.ReplaceAll(p, "")
		err := filepath.WalkDir(p, func(name string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			if files++; files > maxHashedFiles {
				return fmt.Errorf("more than %d files", maxHashedFiles)
			}
			return hashFile(h, name)
		})
		if err != nil {
			writeField(h, "unreadable "+p)
		}
	}
	if files == 0 {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashFile(h hash.Hash, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	writeField(h, name)
	writeField(h, strconv.FormatInt(info.Size(), 10))
	_, err = io.Copy(h, io.LimitReader(f, info.Size()))
	return err
}

// writeField writes s length-prefixed, so that no two different sequences hash alike.
func writeField(h hash.Hash, s string) {
	h.Write([]byte(strconv.Itoa(len(s)) + ":"))
	h.Write([]byte(s))
}
