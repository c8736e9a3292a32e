// Command tmctl is Token Manager's operator tool.
//
//	tmctl migrate          apply every service schema's migrations (DATABASE_URL)
//	tmctl admin-key new    print a fresh admin key (for TM_BOOTSTRAP_ADMIN_KEY)
//	tmctl import-roles [-dry-run]
//	                       copy roles from Clerk publicMetadata into the team schema, once
//	                       (DATABASE_URL, CLERK_SECRET_KEY, CLERK_API_URL); prints a JSON summary
//	tmctl global-admin grant USER_ID | revoke USER_ID | list
//	                       grant or revoke a person's global ADMIN role, audited and mirrored to
//	                       Clerk as PUT/DELETE /api/users/{id}/global-role do; the last global
//	                       ADMIN cannot be revoked (grant/revoke: DATABASE_URL, CLERK_SECRET_KEY,
//	                       CLERK_API_URL; list: DATABASE_URL); prints JSON
//	tmctl orphaned-tokens [-revoke]
//	                       list the deleted teams that still own live tokens (left by a team
//	                       deletion from before token migration 0004); -revoke revokes them
//	                       (audited, removed from KV) and retires the ids (DATABASE_URL); prints JSON
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

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/audit"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
	"github.com/tokenmanager/tokenmanager/services/team"
	"github.com/tokenmanager/tokenmanager/services/token"
	"github.com/tokenmanager/tokenmanager/services/usage"
)

// schemas are the migration sets tmctl applies, in order.
var schemas = []migrate.Set{token.Migrations, team.Migrations, usage.Migrations, audit.Migrations}

type migrateConfig struct {
	DatabaseURL config.Secret
}

func loadMigrateConfig(l *config.Loader) migrateConfig {
	return migrateConfig{DatabaseURL: l.SecretURL("DATABASE_URL", true, "postgres", "postgresql")}
}

type importConfig struct {
	DatabaseURL    config.Secret
	ClerkSecretKey config.Secret
	ClerkAPIURL    string
}

func loadImportConfig(l *config.Loader) importConfig {
	c := importConfig{
		DatabaseURL:    l.SecretURL("DATABASE_URL", true, "postgres", "postgresql"),
		ClerkSecretKey: l.RequiredSecret("CLERK_SECRET_KEY", 1),
		ClerkAPIURL:    l.URL("CLERK_API_URL", auth.DefaultClerkAPIURL, "https", "http"),
	}
	return c
}

// open connects to the database as app, until SIGINT or SIGTERM, and
// checks that the schemas of sets are current; done closes it all.
func open(url config.Secret, app string, sets ...migrate.Set) (ctx context.Context, pool *pgxpool.Pool, done func(), err error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	pool, err = db.Connect(ctx, url.Reveal(), db.WithApplicationName(app))
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	done = func() { pool.Close(); stop() }
	for _, s := range sets {
		if err := migrate.Check(ctx, pool, s); err != nil {
			done()
			return nil, nil, nil, err
		}
	}
	return ctx, pool, done, nil
}

// subcommand is the flag set of the subcommand args[0].
func subcommand(args []string) *flag.FlagSet { return flag.NewFlagSet(args[0], flag.ExitOnError) }

// parse parses a subcommand's flags; arguments beyond them are a usage error.
func parse(fs *flag.FlagSet, args []string) {
	_ = fs.Parse(args[1:])
	if fs.NArg() != 0 {
		printUsage()
	}
}

// loadOrExit reads a command's configuration from the environment; a bad
// environment exits 2.
func loadOrExit[C any](load func(*config.Loader) C) C {
	cfg, _, err := app.Load(os.LookupEnv, load)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tmctl: %v\n", err)
		os.Exit(2)
	}
	return cfg
}

// exitOn exits 1 with command's error, if any.
func exitOn(command string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "tmctl %s: %v\n", command, err)
		os.Exit(1)
	}
}

func printUsage() {
	fmt.Fprintln(os.Stderr, "usage: tmctl [-check-config] migrate | admin-key new | import-roles [-dry-run] | global-admin grant|revoke USER_ID | global-admin list | orphaned-tokens [-revoke]")
	os.Exit(2)
}

func main() {
	checkConfig := flag.Bool("check-config", false, "validate the configuration from the environment, print the variables read as JSON, and exit")
	flag.Usage = printUsage
	flag.Parse()
	args := flag.Args()

	if len(args) == 2 && args[0] == "admin-key" && args[1] == "new" {
		fmt.Println(auth.NewAdminKey())
		return
	}
	if len(args) >= 1 && args[0] == "import-roles" {
		fs := subcommand(args)
		dryRun := fs.Bool("dry-run", false, "report what would be imported without writing")
		parse(fs, args)
		exitOn("import-roles", runImportRoles(loadOrExit(loadImportConfig), *dryRun))
		return
	}
	if len(args) >= 1 && args[0] == "orphaned-tokens" {
		fs := subcommand(args)
		revoke := fs.Bool("revoke", false, "revoke the orphaned tokens and retire their team ids")
		parse(fs, args)
		exitOn("orphaned-tokens", runOrphanedTokens(loadOrExit(loadMigrateConfig), *revoke))
		return
	}
	if len(args) >= 1 && args[0] == "global-admin" {
		os.Exit(globalAdmin(args[1:]))
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
	printUsage()
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

// runImportRoles runs the ImportClerkRoles logic directly against the
// database: an operator with DATABASE_URL needs no admin key for it. Audit
// events go to the team outbox, which the team service delivers.
func runImportRoles(cfg importConfig, dryRun bool) error {
	ctx, pool, done, err := open(cfg.DatabaseURL, "tmctl-import-roles", team.Migrations)
	if err != nil {
		return err
	}
	defer done()
	res, err := team.ImportClerkRoles(ctx, pool, team.NewDirectory(cfg.ClerkAPIURL, cfg.ClerkSecretKey.Reveal()), dryRun)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{
		"dry_run": dryRun, "users_seen": res.UsersSeen, "memberships_imported": res.MembershipsImported,
		"global_admins_imported": res.GlobalAdminsImported, "skipped": res.Skipped,
	})
}

// globalAdmin runs "tmctl global-admin ...": the logic of the team
// service's SetUserGlobalRole and RemoveUserGlobalRole, directly against the
// database (an operator with DATABASE_URL needs no admin key — the way to
// name the first global ADMIN). Audit events (actor "tmctl", a service) and the Clerk
// mirror go to the team outbox, which the team service delivers.
func globalAdmin(args []string) int {
	switch {
	case len(args) == 1 && args[0] == "list":
		exitOn("global-admin list", listGlobalAdmins(loadOrExit(loadMigrateConfig)))
		return 0
	case len(args) == 2 && (args[0] == "grant" || args[0] == "revoke"):
		exitOn("global-admin "+args[0], setGlobalAdmin(loadOrExit(loadImportConfig), args[0] == "grant", args[1]))
		return 0
	}
	printUsage()
	return 2
}

func setGlobalAdmin(cfg importConfig, grant bool, userID string) error {
	ctx, pool, done, err := open(cfg.DatabaseURL, "tmctl-global-admin", team.Migrations)
	if err != nil {
		return err
	}
	defer done()
	dir := team.NewDirectory(cfg.ClerkAPIURL, cfg.ClerkSecretKey.Reveal())
	ctx = auth.WithPrincipal(ctx, team.TmctlPrincipal) // the actor of the audit event
	out := map[string]any{"user_id": userID}
	if grant {
		changed, err := team.GrantGlobalAdmin(ctx, pool, dir, userID)
		if err != nil {
			return err
		}
		out["global_role"], out["changed"] = "ADMIN", changed
	} else {
		if err := team.RevokeGlobalAdmin(ctx, pool, dir, userID); err != nil {
			return err
		}
		out["global_role"], out["changed"] = nil, true
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func listGlobalAdmins(cfg migrateConfig) error {
	ctx, pool, done, err := open(cfg.DatabaseURL, "tmctl-global-admin", team.Migrations)
	if err != nil {
		return err
	}
	defer done()
	admins, err := team.ListGlobalAdmins(ctx, pool)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(admins)
}
