// Command tmctl is Token Manager's operator tool.
//
//	tmctl migrate          apply every service schema's migrations (DATABASE_URL)
//	tmctl admin-key new    print a fresh admin key (for TM_BOOTSTRAP_ADMIN_KEY)
//
// Run with -check-config to validate the environment and list the variables read.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
	"github.com/tokenmanager/tokenmanager/services/team"
	"github.com/tokenmanager/tokenmanager/services/token"
)

// schemas are the migration sets tmctl applies, in order.
var schemas = []migrate.Set{token.Migrations, team.Migrations}

type migrateConfig struct {
	DatabaseURL config.Secret
}

func loadMigrateConfig(l *config.Loader) migrateConfig {
	return migrateConfig{DatabaseURL: l.SecretURL("DATABASE_URL", true, "postgres", "postgresql")}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tmctl [-check-config] migrate | admin-key new")
	os.Exit(2)
}

func main() {
	checkConfig := flag.Bool("check-config", false, "validate the configuration from the environment, print the variables read as JSON, and exit")
	flag.Usage = usage
	flag.Parse()
	args := flag.Args()

	if len(args) == 2 && args[0] == "admin-key" && args[1] == "new" {
		fmt.Println(auth.NewAdminKey())
		return
	}
	if *checkConfig || (len(args) == 1 && args[0] == "migrate") {
		cfg, vars, err := app.Load(os.LookupEnv, loadMigrateConfig)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tmctl: %v\n", err)
			os.Exit(2)
		}
		if *checkConfig {
			_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"vars": vars})
			return
		}
		if err := runMigrate(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "tmctl migrate: %v\n", err)
			os.Exit(1)
		}
		return
	}
	usage()
}

func runMigrate(cfg migrateConfig) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	pool, err := db.Connect(ctx, cfg.DatabaseURL.Reveal(), db.WithApplicationName("tmctl-migrate"))
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, s := range schemas {
		applied, err := migrate.Up(ctx, pool, s)
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			fmt.Printf("%s: up to date\n", s.Schema)
		}
		for _, name := range applied {
			fmt.Printf("%s: applied %s\n", s.Schema, name)
		}
	}
	return nil
}
