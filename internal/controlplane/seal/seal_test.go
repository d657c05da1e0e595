package seal_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/wrenn/wrenn/internal/controlplane/seal"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestSealOpen(t *testing.T) {
	box, err := seal.New(key(1))
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("envd-token")
	a, err := box.Seal([]byte("row-a"), plain)
	if err != nil {
		t.Fatal(err)
	}
	b, err := box.Seal([]byte("row-a"), plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
	if bytes.Contains(a, plain) {
		t.Error("sealed value contains the plaintext")
	}
	got, err := box.Open([]byte("row-a"), a)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := box.Open([]byte("row-b"), a); err == nil {
		t.Error("a value sealed for one row opened for another")
	}
	other, _ := seal.New(key(2))
	if _, err := other.Open([]byte("row-a"), a); err == nil {
		t.Error("a value opened under another key")
	}
	tampered := bytes.Clone(a)
	tampered[len(tampered)-1] ^= 1
	if _, err := box.Open([]byte("row-a"), tampered); err == nil {
		t.Error("a changed value opened")
	}
	for _, bad := range [][]byte{nil, {1}, append([]byte{9}, a[1:]...)} {
		if _, err := box.Open([]byte("row-a"), bad); !errors.Is(err, seal.ErrFormat) {
			t.Errorf("open %x: %v, want ErrFormat", bad, err)
		}
	}
}

func TestNewNeedsA32ByteKey(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := seal.New(make([]byte, n)); err == nil {
			t.Errorf("a %d-byte key was accepted", n)
		}
	}
}
