package config

import (
	"fmt"
	"log/slog"
)

// redacted is what a non-empty Secret prints as.
const redacted = "[REDACTED]"

// Secret is a string that must not appear in logs, errors or dumps. Every
// way of printing or encoding it yields "[REDACTED]" ("" when empty, so a
// missing optional secret stays visible); Reveal returns the value.
//
// fmt applies these methods to exported struct fields only, so keep Secret
// fields of config structs exported.
type Secret string

// Reveal returns the secret value. Call it only where the value is used.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer, used by %#v.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// MarshalText implements encoding.TextMarshaler, which encoding/json and
// other encoders use for string-like types.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Redacted formats v (typically a config struct) with field names, for a
// start-up log line. Secret fields print as [REDACTED].
func Redacted(v any) string { return fmt.Sprintf("%+v", v) }
