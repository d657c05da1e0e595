package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
)

// recipe describes how to build one image. Everything that decides the
// image's content belongs in its definition, so that a change to any of it
// yields a new image id and a rebuild.
type recipe struct {
	name string
	// version is bumped whenever the build steps change in a way the other
	// fields do not show.
	version  int
	packages []string
	// params are further settings of the build (suite, variant, users).
	params map[string]string
	// inputs are host files copied into the image; their bytes are hashed.
	inputs []string
	// build fills rootfs, an empty directory owned by root.
	build func(ctx context.Context, b *builder) error
}

// recipes are the images Ensure knows, by name.
var recipes = map[string]*recipe{
	minimal.name: minimal,
	base.name:    base,
}

// Names lists the recipe names Ensure accepts, sorted.
func Names() []string {
	names := make([]string, 0, len(recipes))
	for n := range recipes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// definition is what an image id is the hash of. Field order and JSON's
// sorted map keys make its encoding canonical.
type definition struct {
	Name     string            `json:"name"`
	Version  int               `json:"version"`
	Packages []string          `json:"packages"`
	Params   map[string]string `json:"params"`
	Inputs   map[string]string `json:"inputs"` // host path → sha256 hex of its bytes
}

// id returns the content address of the image r builds with the host's
// current inputs.
func (r *recipe) id() (string, error) {
	d := definition{
		Name:     r.name,
		Version:  r.version,
		Packages: r.packages,
		Params:   r.params,
		Inputs:   make(map[string]string, len(r.inputs)),
	}
	for _, p := range r.inputs {
		sum, err := fileSHA256(p)
		if err != nil {
			return "", fmt.Errorf("image %s: input: %w", r.name, err)
		}
		d.Inputs[p] = sum
	}
	enc, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("image %s: encode definition: %w", r.name, err)
	}
	sum := sha256.Sum256(append([]byte("wrenn-image\x00"), enc...))
	return hex.EncodeToString(sum[:]), nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
