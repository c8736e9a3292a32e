package usage

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
)

func TestLoadConfig(t *testing.T) {
	base := map[string]string{
		"DATABASE_URL":      "postgres://u@localhost/db",
		"TM_SERVICE_SECRET": "0123456789abcdef0123456789abcdef",
	}
	load := func(extra map[string]string) (Config, error) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		cfg, _, err := app.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, LoadConfig)
		return cfg, err
	}
	cfg, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RetentionDays != 90 || cfg.PartitionsAhead != 7 || cfg.LastUsedInterval != time.Second || cfg.Ingest.AllowUnsigned {
		t.Errorf("defaults %+v", cfg)
	}
	cfg, err = load(map[string]string{"USAGE_INGEST_SECRET": testSecret, "USAGE_INGEST_SECRET_PREVIOUS": testPrevSecret,
		"USAGE_ALLOW_UNSIGNED": "true", "USAGE_RETENTION_DAYS": "30"})
	if err != nil || cfg.Ingest.Secret.Reveal() != testSecret || !cfg.Ingest.AllowUnsigned || cfg.RetentionDays != 30 {
		t.Errorf("%+v, %v", cfg, err)
	}
	_, err = load(map[string]string{"USAGE_INGEST_SECRET": "short-secret-value", "USAGE_RETENTION_DAYS": "0",
		"USAGE_ALLOW_UNSIGNED": "maybe", "USAGE_LAST_USED_INTERVAL": "10ms"})
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, name := range []string{"USAGE_INGEST_SECRET", "USAGE_RETENTION_DAYS", "USAGE_ALLOW_UNSIGNED", "USAGE_LAST_USED_INTERVAL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("problem with %s not reported: %v", name, err)
		}
	}
	if strings.Contains(err.Error(), "short-secret-value") {
		t.Error("the secret is echoed")
	}
	if _, err := load(map[string]string{"USAGE_INGEST_SECRET_PREVIOUS": testPrevSecret}); err == nil || !strings.Contains(err.Error(), "only together") {
		t.Errorf("previous without current: %v", err)
	}
}
