// Command team runs Token Manager's team service (gRPC).
package main

import (
	"log/slog"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/team"
)

func main() {
	app.Main("team", team.LoadConfig, func(c team.Config) slog.Level { return c.LogLevel }, team.Run)
}
