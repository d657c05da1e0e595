// Package ports exposes TCP ports that capsule programs bind only to
// loopback on the capsule's external IPv4 addresses, so the sandbox proxy can
// reach a dev server started on 127.0.0.1.
//
// A scanner reads the listening sockets from /proc/net/tcp and tcp6 every
// Interval; for each port bound only to loopback a forwarder listens on every
// external address at the same port and proxies each connection to the
// loopback listener. Proxying is done in-process with Go TCP connections: no
// socat or other child processes are started, so stopping the subsystem
// needs no process-group cleanup.
package ports

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// DefaultProcNet is where the scanner reads tcp and tcp6 by default.
const DefaultProcNet = "/proc/net"

// Config configures a Subsystem. Zero fields take the documented defaults.
type Config struct {
	Log      *slog.Logger
	Interval time.Duration // 0 → 1 s

	// ProcNet is the directory holding the kernel's tcp and tcp6 socket
	// tables; "" → DefaultProcNet.
	ProcNet string
	// Addrs returns the addresses forwarders listen on; nil → ExternalAddrs.
	Addrs func() ([]netip.Addr, error)
}

// Subsystem is the port scanner plus forwarder. It can be started and stopped
// any number of times (a snapshot stops it, the next /init starts it again).
type Subsystem struct {
	log      *slog.Logger
	interval time.Duration
	procNet  string
	addrs    func() ([]netip.Addr, error)

	// life serializes Start and Stop, so a new run never overlaps the
	// teardown of the previous one; it guards cur.
	life sync.Mutex
	cur  *run

	mu        sync.Mutex // guards forwarded
	forwarded []uint16
}

// run is one Start..Stop period: everything it starts is counted in wg.
type run struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a stopped subsystem.
func New(cfg Config) *Subsystem {
	s := &Subsystem{
		log:      cfg.Log,
		interval: cfg.Interval,
		procNet:  cfg.ProcNet,
		addrs:    cfg.Addrs,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.interval <= 0 {
		s.interval = time.Second
	}
	if s.procNet == "" {
		s.procNet = DefaultProcNet
	}
	if s.addrs == nil {
		s.addrs = ExternalAddrs
	}
	return s
}

// Start starts scanning and forwarding; it is a no-op if already running.
func (s *Subsystem) Start() {
	s.life.Lock()
	defer s.life.Unlock()
	if s.cur != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		s.loop(ctx, r)
	}()
	s.cur = r
	s.log.Debug("port subsystem started")
}

// Stop stops scanning, closes every forwarding listener and proxied
// connection, waits for all goroutines and forgets the forwarded ports. It is
// a no-op if not running.
func (s *Subsystem) Stop() {
	s.life.Lock()
	defer s.life.Unlock()
	if s.cur == nil {
		return
	}
	s.cur.cancel()
	s.cur.wg.Wait()
	s.cur = nil
	s.publish(nil)
	s.log.Debug("port subsystem stopped")
}

// Restart stops and starts the subsystem.
func (s *Subsystem) Restart() {
	s.Stop()
	s.Start()
}

// Running reports whether the subsystem is started.
func (s *Subsystem) Running() bool {
	s.life.Lock()
	defer s.life.Unlock()
	return s.cur != nil
}

// Forwarded returns the sorted ports currently forwarded on at least one
// external address.
func (s *Subsystem) Forwarded() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.forwarded)
}

func (s *Subsystem) publish(fw map[netip.AddrPort]*forwarder) {
	var ports []uint16
	for k := range fw {
		ports = append(ports, k.Port())
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	s.mu.Lock()
	s.forwarded = ports
	s.mu.Unlock()
}

// loop owns the forwarders of one run; it stops them all before returning.
func (s *Subsystem) loop(ctx context.Context, r *run) {
	st := &loopState{
		fw:      map[netip.AddrPort]*forwarder{},
		failing: map[netip.AddrPort]bool{},
	}
	defer func() {
		for k, f := range st.fw {
			f.stop()
			delete(st.fw, k)
		}
		s.publish(nil)
	}()
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.sync(ctx, r, st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loopState is owned by the loop goroutine.
type loopState struct {
	fw      map[netip.AddrPort]*forwarder // by listen address
	failing map[netip.AddrPort]bool       // listen addresses whose bind failed last time
	scanErr bool                          // the last scan failed (log once, not every tick)
}

// sync makes the forwarders match one scan of the socket tables.
func (s *Subsystem) sync(ctx context.Context, r *run, st *loopState) {
	if ctx.Err() != nil {
		return
	}
	socks, err := scan(s.procNet)
	if err == nil {
		var ext []netip.Addr
		ext, err = s.addrs()
		if err == nil {
			st.scanErr = false
			s.apply(ctx, r, st, plan(socks, ext, st.fw))
			return
		}
	}
	// Keep the current forwarders: a transient read error is no reason to
	// cut live connections.
	if !st.scanErr {
		s.log.Warn("port scan failed", "err", err)
	}
	st.scanErr = true
}

func (s *Subsystem) apply(ctx context.Context, r *run, st *loopState, want map[netip.AddrPort]netip.AddrPort) {
	for k, f := range st.fw {
		if t, ok := want[k]; !ok || t != f.target {
			f.stop()
			delete(st.fw, k)
			s.log.Debug("stopped forwarding", "listen", k, "target", f.target)
		}
	}
	for k := range st.failing {
		if _, ok := want[k]; !ok {
			delete(st.failing, k)
		}
	}
	for k, t := range want {
		if _, ok := st.fw[k]; ok {
			continue
		}
		f, err := startForwarder(ctx, &r.wg, s.log, k, t)
		if err != nil {
			// Retried every scan; warn only on the first failure.
			lvl := slog.LevelWarn
			if st.failing[k] {
				lvl = slog.LevelDebug
			}
			s.log.Log(ctx, lvl, "cannot forward port", "listen", k, "target", t, "err", err)
			st.failing[k] = true
			continue
		}
		delete(st.failing, k)
		st.fw[k] = f
		s.log.Info("forwarding port", "listen", k, "target", t)
	}
	s.publish(st.fw)
}

// plan returns, for the listening sockets socks and external addresses ext,
// which listen address should forward to which loopback target. Sockets in
// own (the forwarders' own listeners) are not counted as the program's.
func plan(socks []netip.AddrPort, ext []netip.Addr, own map[netip.AddrPort]*forwarder) map[netip.AddrPort]netip.AddrPort {
	type portInfo struct {
		loopback netip.Addr // preferred loopback target, IPv4 first
		other    bool       // also bound to a non-loopback or wildcard address
	}
	byPort := map[uint16]*portInfo{}
	for _, sock := range socks {
		if _, ok := own[sock]; ok {
			continue
		}
		a := sock.Addr().Unmap()
		pi := byPort[sock.Port()]
		if pi == nil {
			pi = &portInfo{}
			byPort[sock.Port()] = pi
		}
		switch {
		case !a.IsLoopback():
			pi.other = true
		case !pi.loopback.IsValid(), pi.loopback.Is6() && a.Is4(), pi.loopback.Is4() == a.Is4() && a.Less(pi.loopback):
			pi.loopback = a
		}
	}
	want := map[netip.AddrPort]netip.AddrPort{}
	for port, pi := range byPort {
		if pi.other || !pi.loopback.IsValid() {
			continue
		}
		for _, e := range ext {
			want[netip.AddrPortFrom(e, port)] = netip.AddrPortFrom(pi.loopback, port)
		}
	}
	return want
}
