package runtimetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"slices"
	"sync"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Images is a fake of the agent's image store (capsules.Images): it knows a
// fixed set of recipe names and builds nothing.
type Images struct {
	mu      sync.Mutex
	names   []string
	fail    []error
	ensured []string
}

// NewImages returns an Images that knows the given recipe names.
func NewImages(names ...string) *Images {
	return &Images{names: slices.Clone(names)}
}

// Image returns the image the fake yields for recipe name.
func Image(name string) runtime.Image {
	sum := sha256.Sum256([]byte("fake image " + name))
	return runtime.Image{ID: hex.EncodeToString(sum[:]), Path: "/fake/images/" + name}
}

// FailNext makes the next Ensure fail with err (wrapped).
func (i *Images) FailNext(err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.fail = append(i.fail, err)
}

// Ensure returns Image(name) for a known recipe.
func (i *Images) Ensure(_ context.Context, name string) (runtime.Image, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.ensured = append(i.ensured, name)
	if len(i.fail) > 0 {
		err := i.fail[0]
		i.fail = i.fail[1:]
		return runtime.Image{}, fmt.Errorf("fake image %s: %w", name, err)
	}
	if !slices.Contains(i.names, name) {
		return runtime.Image{}, fmt.Errorf("fake image %s: no such recipe: %w", name, fs.ErrNotExist)
	}
	return Image(name), nil
}

// Ensured returns the names Ensure was asked for, oldest first.
func (i *Images) Ensured() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Clone(i.ensured)
}
