package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/config"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoaderValues(t *testing.T) {
	l := config.NewLoader(env(map[string]string{
		"S":     "value",
		"EMPTY": "",
		"I":     " 42 ",
		"B":     "true",
		"D":     "1m30s",
		"L":     " a, ,b ,, c ",
		"U":     "https://api.example.com/v1",
		"HP":    ":9102",
		"SEC":   "0123456789abcdef0123456789abcdef",
		"DB":    "postgres://u:pw@db:5432/tm",
		"LEVEL": "warn",
	}))
	tests := []struct {
		name      string
		got, want any
	}{
		{"String set", l.String("S", "def"), "value"},
		{"String unset", l.String("NOPE", "def"), "def"},
		{"String empty counts as unset", l.String("EMPTY", "def"), "def"},
		{"Required", l.Required("S"), "value"},
		{"Int", l.Int("I", 1, 0, 100), 42},
		{"Int default", l.Int("NOPE", 7, 0, 100), 7},
		{"Bool", l.Bool("B", false), true},
		{"Bool default", l.Bool("NOPE", true), true},
		{"Duration", l.Duration("D", time.Second), 90 * time.Second},
		{"Duration default", l.Duration("NOPE", time.Second), time.Second},
		{"List", l.List("L", nil), []string{"a", "b", "c"}},
		{"List default", l.List("NOPE", []string{"x"}), []string{"x"}},
		{"URL", l.URL("U", "", "http", "https"), "https://api.example.com/v1"},
		{"URL unset without default", l.URL("NOPE", ""), ""},
		{"HostPort", l.HostPort("HP", "127.0.0.1:1"), ":9102"},
		{"HostPort default", l.HostPort("NOPE", "127.0.0.1:9101"), "127.0.0.1:9101"},
		{"Secret", l.Secret("SEC").Reveal(), "0123456789abcdef0123456789abcdef"},
		{"Secret unset", l.Secret("NOPE").Reveal(), ""},
		{"RequiredSecret", l.RequiredSecret("SEC", 32).Reveal(), "0123456789abcdef0123456789abcdef"},
		{"SecretURL", l.SecretURL("DB", true, "postgres").Reveal(), "postgres://u:pw@db:5432/tm"},
		{"Parse", config.Parse(l, "LEVEL", slog.LevelInfo, parseLevel), slog.LevelWarn},
		{"Parse default", config.Parse(l, "NOPE", slog.LevelInfo, parseLevel), slog.LevelInfo},
	}
	for _, tt := range tests {
		if fmt.Sprint(tt.got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if err := l.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

func TestLoaderReportsEveryProblem(t *testing.T) {
	const secret = "hunter2-but-too-short"
	l := config.NewLoader(env(map[string]string{
		"TM_SERVICE_SECRET": secret,
		"TM_PORT":           "eighty",
		"TM_BIG":            "1000",
		"TM_FLAG":           "maybe",
		"TM_WAIT":           "soon",
		"TM_NEG":            "-1s",
		"TM_API":            "api.example.com",
		"TM_SCHEME":         "ftp://example.com",
		"TM_ADDR":           "localhost",
		"TM_BADPORT":        "localhost:http",
		"DATABASE_URL":      "not a url " + secret,
		"TM_LOG_LEVEL":      "loud",
	}))
	l.Required("DATABASE_NAME")
	l.RequiredSecret("TM_SERVICE_SECRET", 32)
	l.RequiredSecret("CF_API_TOKEN", 1)
	l.Int("TM_PORT", 1, 0, 10)
	l.Int("TM_BIG", 1, 0, 10)
	l.Bool("TM_FLAG", false)
	l.Duration("TM_WAIT", time.Second)
	l.Duration("TM_NEG", time.Second)
	l.URL("TM_API", "")
	l.URL("TM_SCHEME", "", "http", "https")
	l.HostPort("TM_ADDR", "")
	l.HostPort("TM_BADPORT", "")
	l.SecretURL("DATABASE_URL", true, "postgres", "postgresql")
	l.SecretURL("AUDIT_DATABASE_URL", true)
	config.Parse(l, "TM_LOG_LEVEL", slog.LevelInfo, parseLevel)

	err := l.Err()
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("Err() = %v, want *config.Error", err)
	}
	wantVars := []string{
		"DATABASE_NAME", "TM_SERVICE_SECRET", "CF_API_TOKEN", "TM_PORT", "TM_BIG", "TM_FLAG",
		"TM_WAIT", "TM_NEG", "TM_API", "TM_SCHEME", "TM_ADDR", "TM_BADPORT", "DATABASE_URL",
		"AUDIT_DATABASE_URL", "TM_LOG_LEVEL",
	}
	var gotVars []string
	for _, p := range cerr.Problems {
		gotVars = append(gotVars, strings.SplitN(p, ":", 2)[0])
	}
	if !slices.Equal(gotVars, wantVars) {
		t.Errorf("problems name %v, want %v\n%v", gotVars, wantVars, err)
	}
	text := err.Error()
	if got := strings.Count(text, "\n"); got != len(wantVars) {
		t.Errorf("want one line per problem after the heading, got %d newlines:\n%s", got, text)
	}
	if strings.Contains(text, secret) || strings.Contains(text, "hunter2") {
		t.Errorf("error text leaks a secret:\n%s", text)
	}
}

type testConfig struct {
	Addr     string
	Token    config.Secret
	Optional config.Secret
	Nested   struct{ Key config.Secret }
}

func TestSecretNeverPrinted(t *testing.T) {
	const value = "s3cr3t-value"
	cfg := testConfig{Addr: "127.0.0.1:1", Token: value}
	cfg.Nested.Key = value

	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg, "token", cfg.Token)
	jsonBytes, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := cfg.Token.MarshalText()

	outputs := map[string]string{
		"%v":         fmt.Sprintf("%v", cfg),
		"%+v":        fmt.Sprintf("%+v", cfg),
		"%#v":        fmt.Sprintf("%#v", cfg),
		"%s":         fmt.Sprintf("%s", cfg.Token),
		"%q":         fmt.Sprintf("%q", cfg.Token),
		"pointer %v": fmt.Sprintf("%+v", &cfg),
		"Redacted":   config.Redacted(cfg),
		"json":       string(jsonBytes),
		"text":       string(text),
		"slog":       logged.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, value) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
		if !strings.Contains(out, "[REDACTED]") {
			t.Errorf("%s does not say [REDACTED]: %s", name, out)
		}
	}
	if got := cfg.Token.Reveal(); got != value {
		t.Errorf("Reveal() = %q, want %q", got, value)
	}
	if got := cfg.Optional.String(); got != "" {
		t.Errorf("empty secret prints %q, want empty", got)
	}
	if got := config.Redacted(cfg); !strings.Contains(got, "Optional: ") || !strings.Contains(got, "Addr:127.0.0.1:1") {
		t.Errorf("Redacted() = %s, want field names and non-secret values", got)
	}
}
