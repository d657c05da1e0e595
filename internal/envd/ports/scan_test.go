package ports

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestParseTable(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	tests := []struct {
		name    string
		body    string
		want    []string
		wantErr bool
	}{
		{
			name: "ipv4 listeners and other states",
			body: header +
				"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n" +
				"   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n" +
				"   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0\n" +
				"   3: 0201F10A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0\n",
			want: []string{"127.0.0.1:8080", "0.0.0.0:22", "10.241.1.2:80"},
		},
		{
			name: "ipv6 loopback, wildcard and v4-mapped",
			body: header +
				"   0: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0 100 0 0 10 0\n" +
				"   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0 100 0 0 10 0\n" +
				"   2: 0000000000000000FFFF00000100007F:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0 100 0 0 10 0\n",
			want: []string{"[::1]:3000", "[::]:80", "[::ffff:127.0.0.1]:5000"},
		},
		{name: "header only", body: header, want: nil},
		{name: "short lines are skipped", body: header + "garbage\n", want: nil},
		{name: "bad port", body: header + "   0: 0100007F:ZZZZ 00000000:0000 0A\n", wantErr: true},
		{name: "bad address length", body: header + "   0: 0100:0050 00000000:0000 0A\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTable([]byte(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			var gotS []string
			for _, ap := range got {
				gotS = append(gotS, ap.String())
			}
			if !slices.Equal(gotS, tt.want) {
				t.Fatalf("got %v, want %v", gotS, tt.want)
			}
		})
	}
}

// TestScanReal reads the real socket tables and finds listeners the test
// opened itself.
func TestScanReal(t *testing.T) {
	ln4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln4.Close()
	want := []netip.AddrPort{ln4.Addr().(*net.TCPAddr).AddrPort()}
	if ln6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		defer ln6.Close()
		want = append(want, ln6.Addr().(*net.TCPAddr).AddrPort())
	} else {
		t.Logf("no IPv6 loopback: %v", err)
	}
	got, err := scan(DefaultProcNet)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("scan did not report listener %s (got %d sockets)", w, len(got))
		}
	}
	// A connected (non-listening) socket must not be reported.
	c, err := net.Dial("tcp4", ln4.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err = scan(DefaultProcNet)
	if err != nil {
		t.Fatal(err)
	}
	if ap := c.LocalAddr().(*net.TCPAddr).AddrPort(); slices.Contains(got, ap) {
		t.Errorf("scan reported client socket %s as listening", ap)
	}
}

func TestScanErrors(t *testing.T) {
	if _, err := scan(t.TempDir()); err == nil {
		t.Fatal("scan of a directory without tcp: want error")
	}
}

func TestExternalAddrsReal(t *testing.T) {
	addrs, err := ExternalAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
			t.Errorf("ExternalAddrs returned %s: want only non-loopback IPv4", a)
		}
	}
}

func TestPlan(t *testing.T) {
	ap := netip.MustParseAddrPort
	ext := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.1.2")}
	tests := []struct {
		name  string
		socks []netip.AddrPort
		ext   []netip.Addr
		own   []netip.AddrPort
		want  map[netip.AddrPort]netip.AddrPort
	}{
		{
			name:  "loopback only is forwarded on every external address",
			socks: []netip.AddrPort{ap("127.0.0.1:3000")},
			ext:   ext,
			want: map[netip.AddrPort]netip.AddrPort{
				ap("10.0.0.2:3000"): ap("127.0.0.1:3000"),
				ap("10.0.1.2:3000"): ap("127.0.0.1:3000"),
			},
		},
		{
			name:  "other 127/8 address",
			socks: []netip.AddrPort{ap("127.0.0.53:53")},
			ext:   ext[:1],
			want:  map[netip.AddrPort]netip.AddrPort{ap("10.0.0.2:53"): ap("127.0.0.53:53")},
		},
		{
			name:  "ipv6 loopback only",
			socks: []netip.AddrPort{ap("[::1]:8000")},
			ext:   ext[:1],
			want:  map[netip.AddrPort]netip.AddrPort{ap("10.0.0.2:8000"): ap("[::1]:8000")},
		},
		{
			name:  "both loopbacks prefer ipv4",
			socks: []netip.AddrPort{ap("[::1]:8000"), ap("127.0.0.1:8000")},
			ext:   ext[:1],
			want:  map[netip.AddrPort]netip.AddrPort{ap("10.0.0.2:8000"): ap("127.0.0.1:8000")},
		},
		{
			name:  "v4-mapped loopback counts as loopback",
			socks: []netip.AddrPort{ap("[::ffff:127.0.0.1]:8001")},
			ext:   ext[:1],
			want:  map[netip.AddrPort]netip.AddrPort{ap("10.0.0.2:8001"): ap("127.0.0.1:8001")},
		},
		{
			name:  "also on ipv4 wildcard",
			socks: []netip.AddrPort{ap("127.0.0.1:3000"), ap("0.0.0.0:3000")},
			ext:   ext,
			want:  map[netip.AddrPort]netip.AddrPort{},
		},
		{
			name:  "also on ipv6 wildcard",
			socks: []netip.AddrPort{ap("127.0.0.1:3000"), ap("[::]:3000")},
			ext:   ext,
			want:  map[netip.AddrPort]netip.AddrPort{},
		},
		{
			name:  "also on the external address by the program",
			socks: []netip.AddrPort{ap("127.0.0.1:3000"), ap("10.0.0.2:3000")},
			ext:   ext,
			want:  map[netip.AddrPort]netip.AddrPort{},
		},
		{
			name:  "own forwarding listener is not the program's",
			socks: []netip.AddrPort{ap("127.0.0.1:3000"), ap("10.0.0.2:3000")},
			ext:   ext[:1],
			own:   []netip.AddrPort{ap("10.0.0.2:3000")},
			want:  map[netip.AddrPort]netip.AddrPort{ap("10.0.0.2:3000"): ap("127.0.0.1:3000")},
		},
		{
			name:  "wildcard only",
			socks: []netip.AddrPort{ap("0.0.0.0:22")},
			ext:   ext,
			want:  map[netip.AddrPort]netip.AddrPort{},
		},
		{
			name:  "no external address",
			socks: []netip.AddrPort{ap("127.0.0.1:3000")},
			want:  map[netip.AddrPort]netip.AddrPort{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			own := map[netip.AddrPort]*forwarder{}
			for _, o := range tt.own {
				own[o] = nil
			}
			got := plan(tt.socks, tt.ext, own)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}
