// Command probe is what the security suite runs inside capsules (busybox's static wget crashes in
// name-service code, and the minimal template has no curl):
//
//	probe [-uid N] [-X METHOD] [-H 'Name: value']... [-d BODY] [-t TIMEOUT] URL
//	probe -serve ADDR
//
// The first form makes one HTTP request, as user N when -uid is given (set before the request), and
// prints "status <code>" and the body; it exits 0 on a 2xx answer, 1 on another status and 3 when no
// answer came (connection refused, timeout). The second serves "hello from the capsule" on ADDR.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	var (
		uid     = flag.Int("uid", -1, "user (and group) id to run as; -1: unchanged")
		method  = flag.String("X", http.MethodGet, "request method")
		body    = flag.String("d", "", "request body")
		timeout = flag.Duration("t", 2*time.Second, "request timeout")
		serve   = flag.String("serve", "", "serve on this address instead")
		hdrs    headers
	)
	flag.Var(&hdrs, "H", "request header 'Name: value' (repeatable)")
	flag.Parse()
	if *serve != "" {
		err := http.ListenAndServe(*serve, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "hello from the capsule")
		}))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: probe [-uid N] [-X METHOD] [-H 'Name: value'] [-d BODY] [-t TIMEOUT] URL | probe -serve ADDR")
		os.Exit(2)
	}
	if *uid >= 0 {
		if err := syscall.Setgroups(nil); err != nil {
			fail(err)
		}
		if err := syscall.Setgid(*uid); err != nil {
			fail(err)
		}
		if err := syscall.Setuid(*uid); err != nil {
			fail(err)
		}
	}
	req, err := http.NewRequest(*method, flag.Arg(0), strings.NewReader(*body))
	if err != nil {
		fail(err)
	}
	for _, h := range hdrs {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	res, err := (&http.Client{Timeout: *timeout}).Do(req)
	if err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	fmt.Printf("status %d\n%s", res.StatusCode, b)
	if res.StatusCode/100 != 2 {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(2)
}
