package network

import (
	"slices"
	"testing"
)

func TestParseNameservers(t *testing.T) {
	conf := []byte(`# comment
nameserver 127.0.0.53
nameserver 10.255.255.53
nameserver fe80::1%eth0
nameserver ::1
nameserver 2001:db8::53
nameserver not-an-ip
search example.test
options edns0
`)
	got := ParseNameservers(conf)
	if want := []string{"10.255.255.53", "2001:db8::53"}; !slices.Equal(got, want) {
		t.Fatalf("ParseNameservers = %v, want %v", got, want)
	}
	if got := ParseNameservers([]byte("nameserver 127.0.0.53\n")); len(got) != 0 {
		t.Fatalf("only a loopback stub: %v", got)
	}
}
