package up

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/wrenn/wrenn/internal/cli/pgcluster"
)

// databaseName is the database of the private cluster that holds Wrenn's schema.
const databaseName = "wrenn"

// cluster is the private PostgreSQL cluster under <data-dir>/postgres (see pgcluster), password-
// authenticated.
type cluster struct {
	*pgcluster.Cluster
}

// newCluster prepares the cluster's directories; port and password come from the state (picked on
// the first run).
func newCluster(dataDir, logPath string, st *state) (*cluster, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the private PostgreSQL cluster runs as the postgres OS user (package postgresql), or pass --database-url: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// The postgres user must reach its directory and its log: traverse rights on the data directory
	// and the log directory through its group, nothing more.
	for _, d := range []string{dataDir, filepath.Dir(logPath)} {
		if err := grantTraverse(d, gid); err != nil {
			return nil, err
		}
	}
	if err := checkTraversable(filepath.Dir(dataDir), uid, gid); err != nil {
		return nil, err
	}
	c, err := pgcluster.New(pgcluster.Config{
		Dir: filepath.Join(dataDir, "postgres"), LogPath: logPath, Port: st.PostgresPort, Password: st.PostgresPassword,
	})
	if errors.Is(err, pgcluster.ErrNotInstalled) {
		return nil, fmt.Errorf("%w: install package postgresql, or pass --database-url", err)
	}
	if err != nil {
		return nil, err
	}
	return &cluster{c}, nil
}

// DSN is the connection string of Wrenn's database on the cluster.
func (c *cluster) DSN() string { return c.Cluster.DSN(databaseName) }

// stop shuts the server down and returns once the postmaster has exited.
func (c *cluster) stop() error {
	pid := c.PostmasterPID()
	if err := c.Stop(); err != nil {
		return err
	}
	if pid > 0 {
		if left := waitGone([]int{pid}, exitWait); len(left) > 0 {
			return fmt.Errorf("the postmaster (pid %d) is still running %s after pg_ctl stop", pid, exitWait)
		}
	}
	return nil
}

// freeLoopbackPort returns a TCP port free on 127.0.0.1 now.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// grantTraverse lets group gid traverse dir (group set to gid, mode g+x) unless others may already.
func grantTraverse(dir string, gid int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	mode := fi.Mode().Perm()
	if mode&0o001 != 0 || (int(st.Gid) == gid && mode&0o010 != 0) {
		return nil
	}
	if err := os.Chown(dir, -1, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode|0o010)
}

// checkTraversable fails when the user uid/gid cannot traverse dir and its parents.
func checkTraversable(dir string, uid, gid int) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0 || (int(st.Uid) == uid && mode&0o100 != 0) || (int(st.Gid) == gid && mode&0o010 != 0)
		if !ok {
			return fmt.Errorf("the postgres OS user cannot enter %s (mode %v), so it cannot reach the private cluster under the data directory: choose another --data-dir, allow it (chmod o+x %s), or pass --database-url", d, mode, d)
		}
		if d == "/" {
			return nil
		}
	}
}
