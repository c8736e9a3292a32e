// Command gateway serves Token Manager's REST API (the v2.7 contract) by
// calling the token, team, audit, usage and health services over gRPC.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokenmanager/tokenmanager/gateway/internal/config"
	"github.com/tokenmanager/tokenmanager/gateway/internal/server"
)

func main() {
	checkConfig := flag.Bool("check-config", false, "validate the configuration from the environment, print the variables read as JSON, and exit")
	flag.Parse()

	cfg, vars, err := config.Load(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	if *checkConfig {
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"vars": vars})
		return
	}

	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("service", "gateway")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(ctx, cfg, log)
	if err != nil {
		log.Error("gateway failed to start", "error", err)
		os.Exit(1)
	}
	if err := srv.Run(ctx); err != nil {
		log.Error("gateway stopped with an error", "error", err)
		os.Exit(1)
	}
}
