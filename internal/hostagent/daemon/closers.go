package daemon

import (
	"context"
	"errors"
	"fmt"
)

// closer releases one thing the agent acquired or started.
type closer struct {
	name  string
	close func(context.Context) error
}

// closers are released in the reverse order of their registration: what started last stops first.
type closers []closer

func (cs *closers) add(name string, fn func(context.Context) error) {
	*cs = append(*cs, closer{name: name, close: fn})
}

// closeAll runs every closer, last registered first, and returns the failures joined. It empties the
// list, so a second call does nothing.
func (cs *closers) closeAll(ctx context.Context) error {
	list := *cs
	*cs = nil
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		c := list[i]
		if err := c.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}
