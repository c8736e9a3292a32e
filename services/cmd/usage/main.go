// Command usage runs Token Manager's usage service (gRPC).
package main

import (
	"log/slog"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/usage"
)

func main() {
	app.Main("usage", usage.LoadConfig, func(c usage.Config) slog.Level { return c.LogLevel }, usage.Run)
}
