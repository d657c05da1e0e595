package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"

	"github.com/wrenn/wrenn/internal/hostagent/images"
)

// ErrNotBuilt is what PrepareImages with check returns when an image is not built yet.
var ErrNotBuilt = errors.New("image not built")

// PrepareImages makes sure the images of the recipes names are built in dataDir's image store, the one
// the agent uses (building one takes what its first capsule would otherwise wait for; a build another
// process runs is waited for), and writes "<name> <id> <rootfs>" for each to out. With check nothing is
// built: an image that is missing is an ErrNotBuilt error. When ctx ends a build in progress is stopped.
func PrepareImages(ctx context.Context, log *slog.Logger, dataDir string, names []string, check bool, out io.Writer) error {
	store := &images.Store{Dir: filepath.Join(dataDir, "images"), Log: log.With("component", "image")}
	defer store.Close()
	for _, name := range names {
		info, err := store.Built(name)
		switch {
		case errors.Is(err, fs.ErrNotExist) && check:
			return fmt.Errorf("image %s: %w", name, ErrNotBuilt)
		case errors.Is(err, fs.ErrNotExist):
			img, err := store.Ensure(ctx, name)
			if err != nil {
				return err
			}
			info.ID, info.Path = img.ID, img.Path
		case err != nil:
			return err
		}
		fmt.Fprintf(out, "%s %s %s\n", name, info.ID, info.Path)
	}
	return nil
}
