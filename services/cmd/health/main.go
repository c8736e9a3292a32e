// Command health runs Token Manager's health service (gRPC).
package main

import (
	"log/slog"

	"github.com/tokenmanager/tokenmanager/services/health"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
)

func main() {
	app.Main("health", health.LoadConfig, func(c health.Config) slog.Level { return c.LogLevel }, health.Run)
}
