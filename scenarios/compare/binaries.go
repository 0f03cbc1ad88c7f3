package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// binaries are the executables a run needs, found before anything starts.
type binaries struct {
	Go            string // to build sibyl when no --sibyl is given
	Sibyl         string // --sibyl, when given
	Etcd          string
	RedisServer   string
	RedisSentinel string // empty: run redis-server --sentinel
}

const installHint = "install it with `apt-get install etcd-server redis-server redis-sentinel`, or leave the system out with --only"

// findBinaries looks up, without a shell, every executable the chosen systems need, and
// fails with one message naming what is missing.
func findBinaries(cfg config) (binaries, error) {
	var b binaries
	var missing []string
	for _, sys := range cfg.Systems {
		switch sys {
		case sysSibyl:
			if cfg.SibylBin != "" {
				st, err := os.Stat(cfg.SibylBin)
				switch {
				case err != nil:
					missing = append(missing, fmt.Sprintf("--sibyl %s: %v", cfg.SibylBin, err))
				case st.IsDir() || st.Mode()&0o111 == 0:
					missing = append(missing, fmt.Sprintf("--sibyl %s: not an executable file", cfg.SibylBin))
				default:
					b.Sibyl, _ = filepath.Abs(cfg.SibylBin)
				}
				continue
			}
			p, err := exec.LookPath("go")
			if err != nil {
				missing = append(missing, "go (to build sibyl; or pass --sibyl PATH): not found in PATH")
				continue
			}
			b.Go = p
			if err := checkRepo(cfg.Repo); err != nil {
				missing = append(missing, err.Error())
			}
		case sysEtcd:
			p, err := exec.LookPath("etcd")
			if err != nil {
				missing = append(missing, "etcd: not found in PATH; "+installHint)
			}
			b.Etcd = p
		case sysRedis:
			p, err := exec.LookPath("redis-server")
			if err != nil {
				missing = append(missing, "redis-server: not found in PATH; "+installHint)
			}
			b.RedisServer = p
			// redis-sentinel is redis-server started under another name; redis-server
			// --sentinel does the same when the package with the name is not installed.
			if s, err := exec.LookPath("redis-sentinel"); err == nil {
				b.RedisSentinel = s
			}
		}
	}
	if len(missing) > 0 {
		return b, fmt.Errorf("missing:\n  %s", strings.Join(missing, "\n  "))
	}
	return b, nil
}

// checkRepo verifies that dir is the root of the Sibyl repository.
func checkRepo(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return fmt.Errorf("--repo %s: not the Sibyl repository root: %v", dir, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if strings.TrimSpace(first) != "module github.com/sibylhq/sibyl" {
		return fmt.Errorf("--repo %s: go.mod declares %q, want module github.com/sibylhq/sibyl", dir, strings.TrimSpace(first))
	}
	return nil
}
