package files

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// patternReader yields n bytes by repeating one random block: cheap to
// produce, and nothing in memory grows with n.
type patternReader struct {
	block []byte
	off   int
	n     int64
}

func newPatternReader(tb testing.TB, n int64) *patternReader {
	block := make([]byte, 1<<20)
	if _, err := rand.Read(block); err != nil {
		tb.Fatal(err)
	}
	return &patternReader{block: block, n: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	n := copy(b, p.block[p.off:])
	p.off = (p.off + n) % len(p.block)
	p.n -= int64(n)
	return n, nil
}

// heapPeak samples the in-use heap while fn runs and returns the highest
// value above the level before it.
func heapPeak(fn func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak {
				peak = ms.HeapInuse - base
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	fn()
	close(stop)
	wg.Wait()
	return peak
}

func TestLargeTransferBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 1 GiB through loopback")
	}
	const size = 256 << 20
	const limit = 24 << 20 // far below the file size
	e := newEnv(t)
	dir := t.TempDir()
	dest := filepath.Join(dir, "big.bin")

	var sent []byte
	peak := heapPeak(func() {
		src := newPatternReader(t, size)
		h := sha256.New()
		status, _, raw := e.post(t, "application/octet-stream", io.TeeReader(src, h), nil, "path", dest)
		if status != 200 {
			t.Fatalf("upload: %d %s", status, raw)
		}
		sent = h.Sum(nil)
	})
	t.Logf("octet-stream upload of %d MiB: peak heap growth %.1f MiB", size>>20, float64(peak)/(1<<20))
	if peak > limit {
		t.Errorf("octet-stream upload grew the heap by %d bytes", peak)
	}
	if info, err := os.Stat(dest); err != nil || info.Size() != size {
		t.Fatalf("uploaded file: %v %v", info, err)
	}

	peak = heapPeak(func() {
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		go func() {
			w, err := mw.CreateFormFile("file", filepath.Join(dir, "multi.bin"))
			if err == nil {
				_, err = io.Copy(w, newPatternReader(t, size))
			}
			if err == nil {
				err = mw.Close()
			}
			pw.CloseWithError(err)
		}()
		status, _, raw := e.post(t, mw.FormDataContentType(), pr, nil)
		if status != 200 {
			t.Fatalf("multipart upload: %d %s", status, raw)
		}
	})
	t.Logf("multipart upload of %d MiB: peak heap growth %.1f MiB", size>>20, float64(peak)/(1<<20))
	if peak > limit {
		t.Errorf("multipart upload grew the heap by %d bytes", peak)
	}

	for _, accept := range []string{"", "gzip"} {
		peak = heapPeak(func() {
			req, _ := http.NewRequest(http.MethodGet, e.filesURL("path", dest), nil)
			if accept != "" {
				req.Header.Set("Accept-Encoding", accept)
			}
			res, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != accept {
				t.Fatalf("download: %d, Content-Encoding %q", res.StatusCode, res.Header.Get("Content-Encoding"))
			}
			var body io.Reader = res.Body
			if accept == "gzip" {
				zr, err := gzip.NewReader(res.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			h := sha256.New()
			if n, err := io.Copy(h, body); err != nil || n != size {
				t.Fatalf("downloaded %d bytes: %v", n, err)
			}
			if !bytes.Equal(h.Sum(nil), sent) {
				t.Fatal("downloaded content differs from the upload")
			}
		})
		t.Logf("download (%q) of %d MiB: peak heap growth %.1f MiB", accept, size>>20, float64(peak)/(1<<20))
		if peak > limit {
			t.Errorf("download (%q) grew the heap by %d bytes", accept, peak)
		}
	}
}
