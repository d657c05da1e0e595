// Command probe fetches a URL and prints the body (usage: probe URL
// [TIMEOUT], TIMEOUT a Go duration, 2s by default); the agent tests copy it
// into capsules to test what a capsule can reach (busybox's static wget
// crashes in name-service code, even for IP literals).
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 && len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: probe URL [TIMEOUT]")
		os.Exit(2)
	}
	timeout := 2 * time.Second
	if len(os.Args) == 3 {
		d, err := time.ParseDuration(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		timeout = d
	}
	c := &http.Client{Timeout: timeout}
	res, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	fmt.Print(string(b))
	if res.StatusCode != http.StatusOK {
		os.Exit(1)
	}
}
