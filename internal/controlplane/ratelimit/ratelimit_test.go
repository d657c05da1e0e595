package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestAllowAndBlocked(t *testing.T) {
	l := New(Limit{Burst: 2, Every: 10 * time.Second}, 0)
	now := time.Unix(1000, 0)
	if b, _ := l.Blocked("a", now); b {
		t.Fatal("unknown key blocked")
	}
	for i := range 2 {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("attempt %d refused", i)
		}
	}
	ok, wait := l.Allow("a", now)
	if ok || wait != 10*time.Second {
		t.Fatalf("third attempt: %v, wait %v", ok, wait)
	}
	if b, w := l.Blocked("a", now.Add(4*time.Second)); !b || w != 6*time.Second {
		t.Fatalf("blocked %v, wait %v", b, w)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("another key limited")
	}
	if b, _ := l.Blocked("a", now.Add(10*time.Second)); b {
		t.Fatal("not refilled")
	}
	if ok, _ := l.Allow("a", now.Add(10*time.Second)); !ok {
		t.Fatal("refilled token refused")
	}
}

func TestBoundedKeys(t *testing.T) {
	l := New(Limit{Burst: 1, Every: time.Hour}, 100)
	now := time.Now()
	for i := range 1000 {
		l.Allow(fmt.Sprint(i), now)
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("%d keys remembered", n)
	}
	// The most recent keys are the ones kept.
	if ok, _ := l.Allow("999", now); ok {
		t.Fatal("recent key forgotten")
	}
}

func TestNoLimit(t *testing.T) {
	l := New(Limit{}, 1)
	for range 100 {
		if ok, _ := l.Allow("x", time.Now()); !ok {
			t.Fatal("zero Limit limited")
		}
	}
	if l.Len() != 0 {
		t.Fatal("zero Limit remembers keys")
	}
}
