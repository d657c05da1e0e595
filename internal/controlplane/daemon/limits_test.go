package daemon_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/daemon"
	"github.com/wrenn/wrenn/internal/testutil"
)

// TestServerLimits serves the control plane with small limits on a loopback port: a client that
// does not finish its headers, an idle keep-alive connection and a request body that stalls are
// each closed by the server; a request that keeps going is not.
func TestServerLimits(t *testing.T) {
	const (
		headerTimeout = 300 * time.Millisecond
		idleTimeout   = 500 * time.Millisecond
		bodyTimeout   = 500 * time.Millisecond
	)
	s, err := daemon.New(context.Background(), daemon.Config{
		DatabaseURL: testutil.Postgres(t), DashboardURL: "http://localhost:8080", Version: "test",
		ReadHeaderTimeout: headerTimeout, IdleTimeout: idleTimeout, BodyTimeout: bodyTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return")
		}
	})
	dial := func(t *testing.T) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// closedWithin reads from c until the server closes it, failing when that takes longer than
	// limit; it returns how long it took.
	closedWithin := func(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(limit))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection still open after %v", limit)
		}
		return time.Since(start)
	}

	t.Run("SlowHeaders", func(t *testing.T) {
		c := dial(t)
		if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: cp\r\n"); err != nil {
			t.Fatal(err)
		}
		if d := closedWithin(t, c, 10*time.Second); d < headerTimeout/2 {
			t.Errorf("closed after %v, before the header timeout", d)
		}
	})

	t.Run("IdleKeepAlive", func(t *testing.T) {
		c := dial(t)
		if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: cp\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.Close {
			t.Fatalf("/health: %d, close %v", res.StatusCode, res.Close)
		}
		start := time.Now()
		_ = c.SetReadDeadline(start.Add(10 * time.Second))
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("idle connection: %v", err)
		}
		if d := time.Since(start); d < idleTimeout/2 {
			t.Errorf("idle connection closed after %v, before the idle timeout", d)
		}
	})

	t.Run("StalledBody", func(t *testing.T) {
		c := dial(t)
		if _, err := io.WriteString(c, "POST /v1/auth/login HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("stalled body: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("stalled body answered %d", res.StatusCode)
		}
		closedWithin(t, c, 10*time.Second)
	})

	// A request whose body was read in time keeps its connection past the body deadline.
	t.Run("BodyInTime", func(t *testing.T) {
		c := dial(t)
		body := `{"email":"nobody@example.com","password":"wrong-password"}`
		req := "POST /v1/auth/login HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + body
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 401 || res.Close {
			t.Fatalf("login: %d close %v", res.StatusCode, res.Close)
		}
	})
}
