package gvisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Paths inside the capsule.
const (
	// EnvdPath is where the envd binary (Spec.Envd) is mounted read-only.
	EnvdPath = "/.wrenn/bin/envd"
	// MetadataMount is where Spec.MetadataDir is mounted read-only.
	MetadataMount = "/.wrenn/meta"
	// MetadataFile is the metadata file envd reads, inside MetadataMount.
	MetadataFile = MetadataMount + "/metadata.json"
)

// imageIDAnnotation records runtime.Image.ID in the bundle, for Flatten
// (runsc reads only dev.gvisor.* annotations).
const imageIDAnnotation = "dev.wrenn.image.id"

const (
	cpuPeriod = 100_000 // µs, the CFS default
	nofile    = 1 << 20
	envPath   = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// capabilities are those of root in a capsule: the usual container set, plus
// what envd needs (CAP_SYS_TIME to set the clock after a restore) and what
// users of a sandbox expect from root (mount, ptrace, nice, rlimits). All of
// them act on gVisor's kernel, not the host's; CAP_NET_ADMIN stays out so
// the capsule cannot change its own address or routes.
var capabilities = []string{
	"CAP_AUDIT_WRITE",
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FOWNER",
	"CAP_FSETID",
	"CAP_KILL",
	"CAP_MKNOD",
	"CAP_NET_BIND_SERVICE",
	"CAP_NET_RAW",
	"CAP_SETFCAP",
	"CAP_SETGID",
	"CAP_SETPCAP",
	"CAP_SETUID",
	"CAP_SYS_ADMIN",
	"CAP_SYS_CHROOT",
	"CAP_SYS_NICE",
	"CAP_SYS_PTRACE",
	"CAP_SYS_RESOURCE",
	"CAP_SYS_TIME",
}

// validID is a container id runsc accepts ("_" and ":" separate the parts
// of its state file names) that is also a plain file name.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$`)

// Hostname is every capsule's hostname (the images map it in /etc/hosts).
const Hostname = "wrenn"

func checkID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("invalid capsule id %q", id)
	}
	return nil
}

func checkSpec(s runtime.Spec) error {
	if err := checkID(s.ID); err != nil {
		return err
	}
	switch {
	case s.VCPUs <= 0:
		return fmt.Errorf("capsule %s: VCPUs must be positive", s.ID)
	case s.MemoryMB <= 0:
		return fmt.Errorf("capsule %s: MemoryMB must be positive", s.ID)
	case s.DiskMB <= 0:
		return fmt.Errorf("capsule %s: DiskMB must be positive", s.ID)
	case s.Network.NetnsPath == "":
		return fmt.Errorf("capsule %s: no network namespace", s.ID)
	}
	for name, p := range map[string]string{
		"image": s.Image.Path, "metadata dir": s.MetadataDir, "envd": s.Envd,
	} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("capsule %s: %s path %q is not absolute", s.ID, name, p)
		}
	}
	return nil
}

// ResolvConf is where a capsule finds its DNS servers.
const ResolvConf = "/etc/resolv.conf"

// resolvConfFile renders the capsule's resolv.conf for nameservers. The file is always mounted (with
// no server it says so), so every capsule's mounts are the same and a checkpoint restores under any
// DNS configuration.
func resolvConfFile(nameservers []string) []byte {
	var b strings.Builder
	b.WriteString("# Written by the Wrenn host agent (-dns).\n")
	if len(nameservers) == 0 {
		b.WriteString("# No DNS servers are configured for capsules on this host.\n")
	}
	for _, ns := range nameservers {
		b.WriteString("nameserver " + ns + "\n")
	}
	b.WriteString("options ndots:0\n")
	return []byte(b.String())
}

// ociSpec is the OCI runtime configuration of a capsule: envd as the only
// process, the image as a copy-on-write root, envd and the metadata bind
// mounted read-only, and the capsule's limits in cgroup cgroupsPath.
//
// resolvConf is the host file mounted read-only at /etc/resolv.conf (the capsule's DNS servers).
func ociSpec(s runtime.Spec, cgroupsPath string, pidsLimit int64, resolvConf string) *specs.Spec {
	mem := int64(s.MemoryMB) << 20
	quota := int64(s.VCPUs) * cpuPeriod
	period := uint64(cpuPeriod)
	return &specs.Spec{
		Version:     specs.Version,
		Annotations: map[string]string{imageIDAnnotation: s.Image.ID},
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: []string{EnvdPath, "-metadata-file", MetadataFile},
			Env:  []string{envPath},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  capabilities,
				Effective: capabilities,
				Permitted: capabilities,
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: nofile, Soft: nofile}},
		},
		Root: &specs.Root{Path: s.Image.Path, Readonly: false},
		// One hostname for every capsule: it is what the images' /etc/hosts
		// resolves, and a capsule restored from a template keeps the
		// hostname of the snapshot anyway.
		Hostname: Hostname,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: EnvdPath, Type: "bind", Source: s.Envd, Options: []string{"rbind", "ro"}},
			{Destination: MetadataMount, Type: "bind", Source: s.MetadataDir, Options: []string{"rbind", "ro"}},
			{Destination: ResolvConf, Type: "bind", Source: resolvConf, Options: []string{"rbind", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: s.Network.NetnsPath},
			},
			CgroupsPath: cgroupsPath,
			Resources: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &mem},
				CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
				Pids:   &specs.LinuxPids{Limit: &pidsLimit},
			},
		},
	}
}

// readBundle reads the OCI spec of the bundle in dir.
func readBundle(dir string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("decode OCI spec: %w", err)
	}
	return &spec, nil
}

// writeBundle writes dir/config.json for spec, replacing any earlier one.
func writeBundle(dir string, spec *specs.Spec) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode OCI spec: %w", err)
	}
	tmp := filepath.Join(dir, ".config.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "config.json"))
}

// PrepareImage creates in the root filesystem root the empty mount points
// the runtime mounts envd, the metadata and the DNS configuration over
// (/.wrenn/bin/envd, /.wrenn/meta, /etc/resolv.conf). runsc would create them itself on every start; doing it once
// when an image is built leaves the image untouched by capsules. It changes
// nothing when they exist, so Create calls it too.
//
// A flattened template's tree was written by a capsule, so every path is
// resolved inside root (os.Root): a symlink such as /.wrenn -> /root makes
// it fail instead of creating files on the host (docs/security.md).
func PrepareImage(root string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("prepare image: %w", err)
	}
	defer r.Close()
	for _, dir := range []string{path.Dir(EnvdPath), MetadataMount, path.Dir(ResolvConf)} {
		if err := r.MkdirAll(strings.TrimPrefix(dir, "/"), 0o755); err != nil {
			return fmt.Errorf("prepare image: %w", err)
		}
	}
	for file, mode := range map[string]os.FileMode{EnvdPath: 0o755, ResolvConf: 0o644} {
		if err := mountPoint(r, strings.TrimPrefix(file, "/"), mode); err != nil {
			return fmt.Errorf("prepare image: %w", err)
		}
	}
	return nil
}

// mountPoint creates an empty file at p in r unless something is there
// already (a symlink there is left alone, not followed).
func mountPoint(r *os.Root, p string, mode os.FileMode) error {
	if _, err := r.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := r.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}
