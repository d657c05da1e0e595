// Package ports exposes TCP ports that capsule programs bind only to
// loopback on the capsule's external IPv4 addresses, so the sandbox proxy can
// reach a dev server started on 127.0.0.1.
//
// A scanner reads the listening sockets from /proc/net/tcp and tcp6; for each
// port bound only to loopback a forwarder listens on every external address at
// the same port and proxies each connection to the loopback listener.
//
// Scanning costs the sandbox a wake-up per scan even when nothing runs, so the
// interval adapts (docs/envd.md#port-forwarding): every Interval while the
// subsystem is hot — for Hot after Start, after a change of the listening set
// and after Poke (envd pokes when it starts a process) — then doubling per
// unchanged scan up to MaxInterval. While envd is the only process of the
// capsule nothing can bind a port until envd itself starts a process (and
// pokes), so the scanner then sleeps until the next Poke: an idle capsule
// with no programs costs no wake-up at all.
//
// Proxying is done in-process with Go TCP connections: no socat or other
// child processes are started, so stopping the subsystem needs no
// process-group cleanup.
package ports

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"
)

// DefaultProcNet is where the scanner reads tcp and tcp6 by default.
const DefaultProcNet = "/proc/net"

// Config configures a Subsystem. Zero fields take the documented defaults.
type Config struct {
	Log         *slog.Logger
	Interval    time.Duration // scan interval while hot; 0 → 1 s
	MaxInterval time.Duration // longest interval while nothing changes; 0 → 8 × Interval
	Hot         time.Duration // how long Interval holds after a change or Poke; 0 → 30 × Interval

	// ProcNet is the directory holding the kernel's tcp and tcp6 socket
	// tables; "" → DefaultProcNet.
	ProcNet string
	// Addrs returns the addresses forwarders listen on; nil → ExternalAddrs.
	Addrs func() ([]netip.Addr, error)
	// Alone reports whether no process but envd exists, so no new listener
	// can appear before the next Poke; nil → OnlyProcess on /proc.
	Alone func() bool
}

// Subsystem is the port scanner plus forwarder. It can be started and stopped
// any number of times (a snapshot stops it, the next /init starts it again).
type Subsystem struct {
	log         *slog.Logger
	interval    time.Duration
	maxInterval time.Duration
	hot         time.Duration
	procNet     string
	addrs       func() ([]netip.Addr, error)
	alone       func() bool

	// poke wakes the running loop for an immediate scan and a new hot period;
	// buffered, so Poke never blocks and pokes coalesce.
	poke chan struct{}

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
		log:         cfg.Log,
		interval:    cfg.Interval,
		maxInterval: cfg.MaxInterval,
		hot:         cfg.Hot,
		procNet:     cfg.ProcNet,
		addrs:       cfg.Addrs,
		alone:       cfg.Alone,
		poke:        make(chan struct{}, 1),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.interval <= 0 {
		s.interval = time.Second
	}
	if s.maxInterval <= 0 {
		s.maxInterval = 8 * s.interval
	}
	s.maxInterval = max(s.maxInterval, s.interval)
	if s.hot <= 0 {
		s.hot = 30 * s.interval
	}
	if s.procNet == "" {
		s.procNet = DefaultProcNet
	}
	if s.addrs == nil {
		s.addrs = ExternalAddrs
	}
	if s.alone == nil {
		s.alone = func() bool { return OnlyProcess(DefaultProc, os.Getpid()) }
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

// Poke makes a running subsystem scan now and then every Interval for the
// hot period: something (a process start) may be about to bind a port. It
// never blocks; pokes while stopped are dropped at the next Start.
func (s *Subsystem) Poke() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
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
	// Drop a poke left from before this run: Start scans at once anyway.
	select {
	case <-s.poke:
	default:
	}
	hotUntil := time.Now().Add(s.hot)
	wait := s.interval
	t := time.NewTimer(s.interval)
	defer t.Stop()
	for {
		if s.sync(ctx, r, st) {
			hotUntil = time.Now().Add(s.hot)
		}
		if s.dormant(st) {
			// Nothing but envd runs: no listener can appear until envd
			// starts a process, and that pokes.
			select {
			case <-ctx.Done():
				return
			case <-s.poke:
				hotUntil, wait = time.Now().Add(s.hot), s.interval
				continue
			}
		}
		wait = s.next(wait, time.Now().Before(hotUntil))
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.poke:
			hotUntil = time.Now().Add(s.hot)
		}
	}
}

// dormant reports whether the loop may wait for a Poke instead of a timer:
// the last scan succeeded, nothing waits for a retry, no port is forwarded
// and envd is the only process.
func (s *Subsystem) dormant(st *loopState) bool {
	return st.scanned && !st.scanErr && len(st.failing) == 0 && len(st.fw) == 0 && s.alone()
}

// next returns the wait before the next scan after one that waited prev:
// Interval while hot, else double prev up to MaxInterval.
func (s *Subsystem) next(prev time.Duration, hot bool) time.Duration {
	if hot {
		return s.interval
	}
	return min(2*prev, s.maxInterval)
}

// loopState is owned by the loop goroutine.
type loopState struct {
	fw      map[netip.AddrPort]*forwarder // by listen address
	failing map[netip.AddrPort]bool       // listen addresses whose bind failed last time
	scanErr bool                          // the last scan failed (log once, not every tick)
	last    []netip.AddrPort              // the listening set of the last good scan, sorted
	scanned bool                          // last is set
}

// sync makes the forwarders match one scan of the socket tables. It reports
// whether the listening set changed since the previous scan (the first scan
// counts as a change) or a forwarder failed to start and will be retried.
func (s *Subsystem) sync(ctx context.Context, r *run, st *loopState) bool {
	if ctx.Err() != nil {
		return false
	}
	socks, err := scan(s.procNet)
	if err == nil {
		slices.SortFunc(socks, netip.AddrPort.Compare)
		socks = slices.Compact(socks)
		changed := !st.scanned || !slices.Equal(socks, st.last)
		st.last, st.scanned = socks, true
		// The interfaces are only read when a port needs forwarding: an idle
		// capsule with no loopback-only listener costs one table read.
		var ext []netip.Addr
		if anyLoopback(socks) {
			ext, err = s.addrs()
		}
		if err == nil {
			st.scanErr = false
			s.apply(ctx, r, st, plan(socks, ext, st.fw))
			return changed || len(st.failing) > 0
		}
	}
	// Keep the current forwarders: a transient read error is no reason to
	// cut live connections.
	if !st.scanErr {
		s.log.Warn("port scan failed", "err", err)
	}
	st.scanErr = true
	return true // retry at the short interval
}

func anyLoopback(socks []netip.AddrPort) bool {
	return slices.ContainsFunc(socks, func(a netip.AddrPort) bool { return a.Addr().Unmap().IsLoopback() })
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
