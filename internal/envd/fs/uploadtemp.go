package fs

import (
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"regexp"
)

// An upload that replaces an existing file writes a hidden temporary file
// beside it and renames it over the original, so a failed upload leaves the
// original intact. Watches hide these temporary files and report the final
// rename as a write of the replaced file.

var uploadTempRE = regexp.MustCompile(`^\.(.+)\.wrenn-upload-[0-9a-f]{16}$`)

// UploadTempName returns a fresh temporary name beside path.
func UploadTempName(path string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".wrenn-upload-"+hex.EncodeToString(b[:])), nil
}

// uploadTarget reports whether name (a base name) is an upload's temporary
// file and, if so, the base name of the file it replaces.
func uploadTarget(name string) (string, bool) {
	m := uploadTempRE.FindStringSubmatch(name)
	if m == nil {
		return "", false
	}
	return m[1], true
}
