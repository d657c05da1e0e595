// Command probe fetches a URL and prints the body; the agent tests copy it
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
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe URL")
		os.Exit(2)
	}
	c := &http.Client{Timeout: 2 * time.Second}
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
