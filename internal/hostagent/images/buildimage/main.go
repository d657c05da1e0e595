// Command buildimage builds an image recipe into an image store directory,
// the way the host agent does on first use. `make base-image` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/wrenn/wrenn/internal/hostagent/images"
)

func main() {
	dir := flag.String("dir", "/var/lib/wrenn/images", "image store directory")
	name := flag.String("name", "base", "recipe: "+strings.Join(images.Names(), ", "))
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *dir, *name); err != nil {
		log.Error("build image", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, dir, name string) error {
	store := &images.Store{Dir: dir, Log: log}
	defer store.Close()
	img, err := store.Ensure(ctx, name)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", img.ID, img.Path)
	return nil
}
