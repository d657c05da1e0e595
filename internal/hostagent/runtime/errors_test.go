package runtime

import (
	"errors"
	"fmt"
	"testing"
)

func TestNewErrorIsOfItsKind(t *testing.T) {
	kinds := []error{ErrNotFound, ErrExists, ErrInvalid, ErrState}
	for _, kind := range kinds {
		err := NewError(kind, "capsule network not found")
		if err.Error() != "capsule network not found" {
			t.Errorf("message %q", err.Error())
		}
		wrapped := fmt.Errorf("create capsule cl-x: %w", err)
		for _, other := range kinds {
			if got, want := errors.Is(wrapped, other), other == kind; got != want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", wrapped, other, got, want)
			}
		}
		if !errors.Is(wrapped, err) {
			t.Errorf("%v lost its sentinel", wrapped)
		}
	}
	if errors.Is(NewError(ErrNotFound, "a"), NewError(ErrNotFound, "a")) {
		t.Error("two sentinels of one kind are the same error")
	}
}
