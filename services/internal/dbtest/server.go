package dbtest

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/tokenmanager/tokenmanager/services/internal/testnet"
)

// Server is a PostgreSQL server a test owns, so that it may crash and
// restart it (the shared server of TM_TEST_DATABASE_URL must never be).
// initdb and pg_ctl run as the postgres user when the test runs as root,
// which they refuse.
type Server struct {
	URL     string // the superuser's URL, database postgres
	LogFile string // the server's log, for a failed test's output

	t           testing.TB
	pgctl, data string
	opts        string
}

// ServerOptions tune StartServer.
type ServerOptions struct {
	// Fsync keeps fsync on: for tests of what a crash must not lose. Off,
	// the server is faster and a crash may lose committed work.
	Fsync bool
	// MaxConnections is max_connections (default 100).
	MaxConnections int
}

// ErrNoServerBinaries says initdb and pg_ctl are not installed here.
var ErrNoServerBinaries = errors.New("dbtest: PostgreSQL server binaries (initdb, pg_ctl) not found; set PG_BIN")

// StartServer initialises a cluster in a temporary folder and starts it on
// a free port; the server is stopped and removed when the test ends. It
// looks for the binaries in $PG_BIN, then on PATH, then in the newest
// /usr/lib/postgresql/*/bin.
func StartServer(t testing.TB, o ServerOptions) (*Server, error) {
	t.Helper()
	initdb, pgctl, err := serverBinaries()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: its parent folder is the test user's alone, and the
	// postgres user must enter this one.
	dir, err := os.MkdirTemp("", "tm-pg-")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown postgres %s: %v %s", dir, err, out)
		}
	}
	s := &Server{t: t, pgctl: pgctl, data: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, "server.log")}
	if out, err := s.asPostgres(initdb, "-D", s.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v %s", err, out)
	}
	port := strconv.Itoa(testnet.FreePort(t))
	s.opts = "-p " + port + " -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
	if !o.Fsync {
		s.opts += " -c fsync=off"
	}
	s.opts += " -c max_connections=" + strconv.Itoa(cmp.Or(o.MaxConnections, 100))
	if err := s.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = s.asPostgres(s.pgctl, "-D", s.data, "-m", "immediate", "-w", "stop").Run() })
	s.URL = "postgres://postgres@127.0.0.1:" + port + "/postgres?sslmode=disable"
	return s, nil
}

// Start starts the (stopped) server and waits until it accepts connections.
func (s *Server) Start() error {
	if out, err := s.asPostgres(s.pgctl, "-D", s.data, "-l", s.LogFile, "-w", "-t", "30", "-o", s.opts, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(s.LogFile)
		return fmt.Errorf("pg_ctl start: %v %s\n%s", err, out, log)
	}
	return nil
}

// Crash stops the server the way a crash does: no checkpoint, every
// connection cut; the next start recovers from WAL.
func (s *Server) Crash() error {
	if out, err := s.asPostgres(s.pgctl, "-D", s.data, "-m", "immediate", "-w", "-t", "30", "stop").CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop -m immediate: %v %s", err, out)
	}
	return nil
}

// Restart is Crash, then Start.
func (s *Server) Restart() error {
	if err := s.Crash(); err != nil {
		return err
	}
	return s.Start()
}

func (s *Server) asPostgres(args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
	} else {
		cmd = exec.Command(args[0], args[1:]...)
	}
	cmd.Dir = "/" // the postgres user may not enter the test's working directory
	return cmd
}

func serverBinaries() (initdb, pgctl string, err error) {
	dirs := []string{os.Getenv("PG_BIN")}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	installed, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.Sort(installed)
	slices.Reverse(installed)
	for _, d := range append(dirs, installed...) {
		if d == "" {
			continue
		}
		initdb, pgctl = filepath.Join(d, "initdb"), filepath.Join(d, "pg_ctl")
		if _, err1 := os.Stat(initdb); err1 == nil {
			if _, err2 := os.Stat(pgctl); err2 == nil {
				return initdb, pgctl, nil
			}
		}
	}
	return "", "", ErrNoServerBinaries
}
