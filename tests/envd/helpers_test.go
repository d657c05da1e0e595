// Package envd_test drives the real envd binary, as root on loopback, with
// Connect clients (JSON and binary codecs, HTTP/1.1 and h2c) and plain HTTP.
package envd_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem/filesystemconnect"
	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/api/envd/process/processconnect"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// replayHeader is the opt-in header of Wrenn's output replay on Connect.
const replayHeader = "X-Wrenn-Replay-From"

// transport is one way of talking to envd: a codec over an HTTP version.
type transport struct {
	name   string
	client *http.Client
	opts   []connect.ClientOption
}

func h1Client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableCompression: true}}
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p, DisableCompression: true}}
}

// Shared clients, so a test can close every idle connection it made before
// counting envd's descriptors.
var (
	sharedH1  = h1Client()
	sharedH2C = h2cClient()
)

// transports covers both codecs and both HTTP versions.
func transports() []transport {
	return []transport{
		{"json-h1", sharedH1, []connect.ClientOption{connect.WithProtoJSON()}},
		{"proto-h2c", sharedH2C, nil},
		{"json-h2c", sharedH2C, []connect.ClientOption{connect.WithProtoJSON()}},
		{"proto-h1-gzip", sharedH1, []connect.ClientOption{connect.WithSendGzip()}},
	}
}

// env is a running envd with clients.
type env struct {
	*testutil.Envd
	http *http.Client
	proc processconnect.ProcessClient
	fs   filesystemconnect.FilesystemClient
}

// startEnvd runs a fresh envd for one test (JSON over HTTP/1.1 by default,
// like the SDK).
func startEnvd(t *testing.T, args ...string) *env {
	t.Helper()
	testutil.Integration(t)
	e := testutil.StartEnvd(t, args...)
	return newEnv(e)
}

func newEnv(e *testutil.Envd) *env {
	tr := transports()[0]
	return &env{
		Envd: e,
		http: sharedH1,
		proc: processconnect.NewProcessClient(tr.client, e.URL, tr.opts...),
		fs:   filesystemconnect.NewFilesystemClient(tr.client, e.URL, tr.opts...),
	}
}

func (e *env) procVia(tr transport) processconnect.ProcessClient {
	return processconnect.NewProcessClient(tr.client, e.URL, tr.opts...)
}

func (e *env) fsVia(tr transport) filesystemconnect.FilesystemClient {
	return filesystemconnect.NewFilesystemClient(tr.client, e.URL, tr.opts...)
}

// requireHealthy asserts envd still answers and was not restarted.
func (e *env) requireHealthy(t *testing.T) {
	t.Helper()
	if !e.Alive() {
		t.Fatalf("envd (pid %d) exited", e.PID)
	}
	resp, err := e.http.Get(e.URL + "/health")
	if err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /health: %s", resp.Status)
	}
}

// fds returns envd's open descriptors after dropping the test's idle
// keep-alive connections, which envd holds too.
func (e *env) fds(t *testing.T) int {
	t.Helper()
	sharedH1.CloseIdleConnections()
	sharedH2C.CloseIdleConnections()
	n, err := testutil.OpenFDs(e.PID)
	if err != nil {
		t.Fatalf("open fds of envd: %v", err)
	}
	return n
}

// requireNoFDLeak waits for envd's descriptor count to return to base
// (plus a little slack for lazily opened files such as the user database).
func (e *env) requireNoFDLeak(t *testing.T, base int) {
	t.Helper()
	var n int
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n = e.fds(t); n <= base+3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("envd holds %d descriptors, %d before the test", n, base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func basicUser(name string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"))
}

func ptr[T any](v T) *T { return &v }

// bash builds a StartRequest running script in bash, as the SDK's commands.run(script) does (the SDK
// adds -l; tests/e2bjs runs the SDK itself).
func bash(script string) *process.StartRequest {
	return &process.StartRequest{
		// Not a login shell: these tests run envd on the host, whose login profile (root's) is not
		// the test's business and may be slow or stuck (a pyenv rehash lock).
		Process: &process.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", script}},
		Stdin:   ptr(false),
	}
}

// result is what one Start or Connect stream delivered.
type result struct {
	pid        uint32
	stdout     bytes.Buffer
	stderr     bytes.Buffer
	pty        bytes.Buffer
	end        *process.ProcessEvent_EndEvent
	keepalives int
	offsets    []uint64 // end_offset of data events (replay)
	err        error    // the stream's final error, nil on clean end
	events     int
}

type eventMsg[T any] interface {
	*T
	GetEvent() *process.ProcessEvent
}

// drain reads a process stream to its end. It fails the test when the first
// message is not a start event.
func drain[T any, PT eventMsg[T]](t *testing.T, s *connect.ServerStreamForClient[T]) *result {
	t.Helper()
	r := &result{}
	for s.Receive() {
		r.add(t, PT(s.Msg()).GetEvent())
	}
	r.err = s.Err()
	_ = s.Close()
	return r
}

func (r *result) add(t *testing.T, ev *process.ProcessEvent) {
	t.Helper()
	if r.events == 0 && ev.GetStart() == nil {
		t.Errorf("first event is %v, want start", ev)
	}
	r.events++
	switch e := ev.GetEvent().(type) {
	case *process.ProcessEvent_Start:
		r.pid = e.Start.GetPid()
	case *process.ProcessEvent_Data:
		r.stdout.Write(e.Data.GetStdout())
		r.stderr.Write(e.Data.GetStderr())
		r.pty.Write(e.Data.GetPty())
		if e.Data.GetEndOffset() != 0 {
			r.offsets = append(r.offsets, e.Data.GetEndOffset())
		}
	case *process.ProcessEvent_End:
		if r.end != nil {
			t.Errorf("second end event %v", e.End)
		}
		r.end = e.End
	case *process.ProcessEvent_Keepalive:
		r.keepalives++
	}
}

// run starts req and drains the stream.
func run(t *testing.T, pc processconnect.ProcessClient, req *process.StartRequest, hdr ...string) *result {
	t.Helper()
	r := connect.NewRequest(req)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header().Set(hdr[i], hdr[i+1])
	}
	s, err := pc.Start(ctxT(t, 30*time.Second), r)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return drain(t, s)
}

// started is a process whose Start stream is being read in the background.
type started struct {
	pid  uint32
	done chan *result
}

// startBG starts req, waits for the start event, and keeps draining the
// stream in the background; wait() returns the result.
func startBG(t *testing.T, pc processconnect.ProcessClient, req *process.StartRequest, hdr ...string) *started {
	t.Helper()
	// No deadline on ctx: connect-go would turn it into Connect-Timeout-Ms,
	// which envd treats as the process lifetime.
	ctx, cancel := context.WithCancel(context.Background())
	stopTimer := time.AfterFunc(60*time.Second, cancel)
	r := connect.NewRequest(req)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header().Set(hdr[i], hdr[i+1])
	}
	s, err := pc.Start(ctx, r)
	if err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	if !s.Receive() {
		cancel()
		t.Fatalf("Start: no start event: %v", s.Err())
	}
	res := &result{}
	res.add(t, s.Msg().GetEvent())
	st := &started{pid: res.pid, done: make(chan *result, 1)}
	go func() {
		defer cancel()
		for s.Receive() {
			ev := s.Msg().GetEvent()
			res.events++
			switch e := ev.GetEvent().(type) {
			case *process.ProcessEvent_Data:
				res.stdout.Write(e.Data.GetStdout())
				res.stderr.Write(e.Data.GetStderr())
				res.pty.Write(e.Data.GetPty())
			case *process.ProcessEvent_End:
				res.end = e.End
			case *process.ProcessEvent_Keepalive:
				res.keepalives++
			}
		}
		res.err = s.Err()
		_ = s.Close()
		st.done <- res
	}()
	t.Cleanup(func() {
		stopTimer.Stop()
		cancel()
	})
	return st
}

func (s *started) wait(t *testing.T, d time.Duration) *result {
	t.Helper()
	select {
	case r := <-s.done:
		return r
	case <-time.After(d):
		t.Fatalf("process %d: no end within %v", s.pid, d)
		return nil
	}
}

func wantCode(t *testing.T, err error, want connect.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	if got := connect.CodeOf(err); got != want {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

func selPid(pid uint32) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: pid}}
}

func selTag(tag string) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Tag{Tag: tag}}
}

func kill(t *testing.T, pc processconnect.ProcessClient, pid uint32, sig process.Signal) error {
	t.Helper()
	_, err := pc.SendSignal(ctxT(t, 30*time.Second), connect.NewRequest(&process.SendSignalRequest{
		Process: selPid(pid), Signal: sig,
	}))
	return err
}

func listPids(t *testing.T, pc processconnect.ProcessClient) map[uint32]*process.ProcessInfo {
	t.Helper()
	resp, err := pc.List(ctxT(t, 30*time.Second), connect.NewRequest(&process.ListRequest{}))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	m := map[uint32]*process.ProcessInfo{}
	for _, p := range resp.Msg.GetProcesses() {
		m[p.GetPid()] = p
	}
	return m
}

// eventually polls cond every 50 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// envelope frames payload as one Connect stream message.
func envelope(flags byte, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// frame is one envelope of a Connect stream response.
type frame struct {
	flags   byte
	payload []byte
}

// readFrames splits a stream response body into envelopes.
func readFrames(r io.Reader) ([]frame, error) {
	var out []frame
	for {
		var head [5]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		p := make([]byte, binary.BigEndian.Uint32(head[1:]))
		if _, err := io.ReadFull(r, p); err != nil {
			return out, err
		}
		out = append(out, frame{head[0], p})
	}
}

// endOfStream is the JSON of a Connect end-of-stream envelope.
type endOfStream struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// rawStream posts one enveloped JSON request to a stream RPC and returns the
// HTTP status and the frames.
func rawStream(t *testing.T, e *env, path string, body []byte, hdr ...string) (int, []frame) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 20*time.Second), http.MethodPost, e.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/connect+json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	frames, err := readFrames(resp.Body)
	if err != nil && resp.StatusCode == http.StatusOK {
		t.Fatalf("POST %s: reading frames: %v", path, err)
	}
	return resp.StatusCode, frames
}

// streamError checks that frames end in exactly one end-of-stream envelope
// and returns its error code ("" on success).
func streamError(t *testing.T, frames []frame) string {
	t.Helper()
	if len(frames) == 0 {
		t.Fatal("stream response has no envelopes")
	}
	last := frames[len(frames)-1]
	if last.flags&0x02 == 0 {
		t.Fatalf("last envelope has flags %#x, want end-of-stream", last.flags)
	}
	for _, f := range frames[:len(frames)-1] {
		if f.flags&0x02 != 0 {
			t.Fatal("end-of-stream envelope before the last one")
		}
	}
	var eos endOfStream
	if err := json.Unmarshal(last.payload, &eos); err != nil {
		t.Fatalf("end-of-stream payload %q is not JSON: %v", last.payload, err)
	}
	if eos.Error == nil {
		return ""
	}
	return eos.Error.Code
}

// rawUnary posts body to a unary path and returns the status and the
// decoded Connect error code ("" when the body has none).
func rawUnary(t *testing.T, e *env, path, contentType string, body []byte, hdr ...string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 20*time.Second), http.MethodPost, e.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ce struct {
		Code string `json:"code"`
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(b, &ce)
	}
	return resp.StatusCode, ce.Code, b
}
