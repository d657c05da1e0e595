// Command echoserver is a small static web server that tests/proxy copies
// into a capsule to test the port proxy (docs/api.md, Port proxy):
//
//	GET /hello      "hello <method> <path> <proto>\n"
//	GET /ws         WebSocket: every message comes back prefixed "echo:"
//	GET /stream     writes "first\n", flushes, then waits until /release
//	                (at most two minutes) and writes "second\n"
//	GET /release    lets /stream finish
//
// Usage: echoserver <listen address>
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/coder/websocket"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: echoserver <listen address>")
	}
	release := make(chan struct{})
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s %s\n", r.Method, r.URL.Path, r.Proto)
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), b...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, "first\n")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		case <-time.After(2 * time.Minute):
		}
		_, _ = fmt.Fprint(w, "second\n")
	})
	mux.HandleFunc("GET /release", func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(release) })
		_, _ = fmt.Fprint(w, "released\n")
	})
	srv := &http.Server{Addr: os.Args[1], Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
