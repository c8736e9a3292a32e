// Package app is what every service binary shares around its own code: the
// common configuration, the -check-config mode, logging, signal handling,
// the database pool and the authenticated gRPC server.
package app

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"

	"github.com/tokenmanager/tokenmanager/services/internal/config"
	"github.com/tokenmanager/tokenmanager/services/internal/logging"
)

// recorder wraps a lookup function and remembers every name asked for, so
// -check-config can say which variables a binary reads.
type recorder struct {
	mu     sync.Mutex
	lookup func(string) (string, bool)
	names  map[string]bool
}

func (r *recorder) Lookup(name string) (string, bool) {
	r.mu.Lock()
	r.names[name] = true
	r.mu.Unlock()
	return r.lookup(name)
}

func (r *recorder) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.names))
	for n := range r.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Load fills a binary's configuration with load, returning the names of
// the variables read.
func Load[T any](lookup func(string) (string, bool), load func(*config.Loader) T) (T, []string, error) {
	rec := &recorder{lookup: lookup, names: map[string]bool{}}
	l := config.NewLoader(rec.Lookup)
	cfg := load(l)
	return cfg, rec.Names(), l.Err()
}

// Main is the whole main function of a service binary: it loads the
// configuration (exiting 2 with every problem listed when it is invalid),
// answers -check-config, and otherwise runs run until SIGINT or SIGTERM.
// level picks the log level out of the loaded configuration.
func Main[T any](name string, load func(*config.Loader) T, level func(T) slog.Level, run func(ctx context.Context, cfg T, log *slog.Logger) error) {
	checkConfig := flag.Bool("check-config", false, "validate the configuration from the environment, print the variables read as JSON, and exit")
	flag.Parse()

	cfg, vars, err := Load(os.LookupEnv, load)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	if *checkConfig {
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"vars": vars})
		return
	}
	log := logging.New(os.Stderr, level(cfg), name)
	log.Info("starting", "config", config.Redacted(cfg))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("stopped with an error", "error", err)
		os.Exit(1)
	}
	log.Info("stopped")
}
