package capsules

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
)

// Metadata keys of the runtime versions every capsule reports.
const (
	MetaKernelVersion = "kernel_version"
	MetaAgentVersion  = "agent_version"
	MetaEnvdVersion   = "envd_version"
	MetaRunscVersion  = "runsc_version"
	MetaImageID       = "image_id"
)

// runtimeVersions returns the versions every capsule on this host shares:
// cfg plus the host kernel release.
func runtimeVersions(cfg map[string]string) map[string]string {
	out := maps.Clone(cfg)
	if out == nil {
		out = map[string]string{}
	}
	if out[MetaKernelVersion] == "" {
		if rel := kernelRelease(); rel != "" {
			out[MetaKernelVersion] = rel
		}
	}
	return out
}

// kernelRelease is what uname -r prints, or empty.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// runtimeMetadata is the metadata of the capsule r describes.
func (a *Agent) runtimeMetadata(r *record) map[string]string {
	m := make(map[string]string, len(a.versions)+2)
	maps.Copy(m, a.versions)
	if r.EnvdVersion != "" {
		m[MetaEnvdVersion] = r.EnvdVersion
	}
	if r.Image.ID != "" {
		m[MetaImageID] = r.Image.ID
	}
	return m
}

// healthClient asks envd for its version; no connection is kept.
var healthClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// envdVersion asks the envd at hostIP (port 49983, or host:port as
// envdclient.New takes it) for its version (GET /health → {"version"}).
func envdVersion(ctx context.Context, hostIP string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addr := hostIP
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(hostIP, strconv.Itoa(envdclient.Port))
	}
	url := "http://" + addr + "/health"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	res, err := healthClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("envd /health: %s", res.Status)
	}
	var body struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 4096)).Decode(&body); err != nil {
		return "", fmt.Errorf("envd /health: %w", err)
	}
	return body.Version, nil
}
