package files

import (
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

const benchSize = 64 << 20

// benchFile writes a benchSize file of incompressible data.
func benchFile(b *testing.B, dir string) string {
	b.Helper()
	path := filepath.Join(dir, "src.bin")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, newPatternReader(b, benchSize)); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkLocalCopy is the baseline: a file-to-file copy of the same size
// on the same disk.
func BenchmarkLocalCopy(b *testing.B) {
	dir := b.TempDir()
	src := benchFile(b, dir)
	b.SetBytes(benchSize)
	for b.Loop() {
		in, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dir, "dst.bin"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			b.Fatal(err)
		}
		_ = in.Close()
		if err := out.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpload(b *testing.B) {
	e := newEnv(b)
	dir := b.TempDir()
	src := benchFile(b, dir)
	url := e.filesURL("path", filepath.Join(dir, "up.bin"))
	b.SetBytes(benchSize)
	for b.Loop() {
		f, err := os.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, url, f)
		req.ContentLength = benchSize
		req.Header.Set("Content-Type", "application/octet-stream")
		res, err := e.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

func BenchmarkDownload(b *testing.B) {
	for _, accept := range []string{"identity", "gzip"} {
		b.Run(accept, func(b *testing.B) {
			e := newEnv(b)
			dir := b.TempDir()
			url := e.filesURL("path", benchFile(b, dir))
			// The client copies with the buffer size envd's own uploads use.
			buf := make([]byte, copyBufferSize)
			b.SetBytes(benchSize)
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Accept-Encoding", accept)
				res, err := e.client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				var body io.Reader = res.Body
				if accept == "gzip" {
					zr, err := gzip.NewReader(res.Body)
					if err != nil {
						b.Fatal(err)
					}
					body = zr
				}
				out, err := os.Create(filepath.Join(dir, "down.bin"))
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(struct{ io.Writer }{out}, onlyReader{body}, buf)
				_ = res.Body.Close()
				_ = out.Close()
				if err != nil || n != benchSize {
					b.Fatalf("downloaded %d bytes: %v", n, err)
				}
			}
		})
	}
}
