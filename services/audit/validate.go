package audit

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Limits of what Record accepts. Events come from our own services, so a
// violation is a writer's bug: Record refuses the whole batch and says which
// event is wrong rather than storing half of it.
const (
	MaxBatch        = 1000
	maxDetailsBytes = 16 << 10
	maxDetailsDepth = 8
)

var (
	namePattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
	actorTypes  = map[string]bool{"user": true, "admin_key": true, "service": true, "system": true}
	// secretKeys are details keys that name a secret. Details are shown to
	// every reader of a team's trail and exported to CSV, so they must never
	// hold one; refusing these names catches the obvious mistakes (a writer
	// that dumps a request body). Names like token_ref or key_ref (the name
	// of a secret, not its value) are fine.
	secretKeys = map[string]bool{
		"token": true, "secret": true, "password": true, "passwd": true, "api_key": true, "apikey": true,
		"private_key": true, "secret_key": true, "access_token": true, "refresh_token": true,
		"authorization": true, "client_secret": true, "backend_auth_secrets": true, "credentials": true,
		"encrypted_token": true, "token_encrypted": true,
	}
	secretSuffixes = []string{"_secret", "_password", "_token", "_secrets"}
	// secretPrefixes are the formats of credentials this system issues or
	// holds: client tokens, admin keys, service credentials, Clerk keys.
	secretPrefixes = []string{"ntk_", "tmak_", "tmsvc_", "sk_live_", "sk_test_"}
)

// newEvent validates a submitted event and converts it for storage (id,
// recorded_at and hashes are set when it is appended). now bounds
// occurred_at and stands in for it when the writer sent none.
func newEvent(in *auditv1.AuditEvent, now time.Time) (Event, error) {
	a := in.GetActor()
	e := Event{
		EventID:    in.GetEventId(),
		ActorType:  a.GetType(),
		ActorID:    a.GetId(),
		ActorEmail: a.GetEmail(),
		ActorName:  a.GetName(),
		Action:     in.GetAction(),
		EntityType: in.GetEntityType(),
		EntityID:   in.GetEntityId(),
		TeamID:     in.GetTeamId(),
		RequestID:  in.GetRequestId(),
		ClientIP:   in.GetClientIp(),
		UserAgent:  in.GetUserAgent(),
	}
	if e.ActorType == "" {
		e.ActorType = "system"
	}
	switch {
	case e.EventID == "":
		return e, errs.Invalid("event_id is required")
	case !namePattern.MatchString(e.Action):
		return e, errs.Invalid("action must be 1-64 characters of a-z, 0-9, '_', '.', '-' starting with a letter")
	case !namePattern.MatchString(e.EntityType):
		return e, errs.Invalid("entity_type must be 1-64 characters of a-z, 0-9, '_', '.', '-' starting with a letter")
	case !actorTypes[e.ActorType]:
		return e, errs.Invalid("actor.type must be one of user, admin_key, service, system")
	}
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{
		{"event_id", e.EventID, 128}, {"actor.id", e.ActorID, 128}, {"actor.email", e.ActorEmail, 320},
		{"actor.name", e.ActorName, 200}, {"entity_id", e.EntityID, 128}, {"team_id", e.TeamID, 64},
		{"request_id", e.RequestID, 128}, {"client_ip", e.ClientIP, 64}, {"user_agent", e.UserAgent, 512},
	} {
		if err := checkText(f.name, f.v, f.max); err != nil {
			return e, err
		}
	}

	e.OccurredAt = now
	if ts := in.GetOccurredAt(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return e, errs.Invalid("occurred_at is not a valid time")
		}
		t := ts.AsTime()
		if t.Year() < 2000 || t.After(now.Add(24*time.Hour)) {
			return e, errs.Invalid("occurred_at is out of range")
		}
		e.OccurredAt = t
	}
	e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Microsecond)

	details := in.GetDetails().AsMap()
	if err := checkDetails(details, 0); err != nil {
		return e, err
	}
	raw, err := marshalCanonical(details)
	if err != nil {
		return e, errs.Invalid("details is not a valid JSON object")
	}
	if len(raw) > maxDetailsBytes {
		return e, errs.Invalid(fmt.Sprintf("details exceed %d bytes", maxDetailsBytes))
	}
	e.Details = raw
	return e, nil
}

// checkText refuses what PostgreSQL text cannot hold (NUL, invalid UTF-8)
// and overlong values.
func checkText(name, v string, max int) error {
	switch {
	case len(v) > max:
		return errs.Invalid(fmt.Sprintf("%s is longer than %d bytes", name, max))
	case !utf8.ValidString(v) || strings.ContainsRune(v, 0):
		return errs.Invalid(name + " holds invalid characters")
	}
	return nil
}

// checkDetails walks the details object: bounded depth, no NUL (jsonb
// refuses \u0000), no key naming a secret and no value shaped like one.
func checkDetails(v any, depth int) error {
	if depth > maxDetailsDepth {
		return errs.Invalid(fmt.Sprintf("details nest deeper than %d levels", maxDetailsDepth))
	}
	switch x := v.(type) {
	case map[string]any:
		for k, item := range x {
			if err := checkText("details key", k, 128); err != nil {
				return err
			}
			if isSecretKey(k) {
				return errs.Invalid(fmt.Sprintf("details must not hold secrets (key %q)", k))
			}
			if err := checkDetails(item, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, item := range x {
			if err := checkDetails(item, depth+1); err != nil {
				return err
			}
		}
	case string:
		if strings.ContainsRune(x, 0) || !utf8.ValidString(x) {
			return errs.Invalid("details hold invalid characters")
		}
		for _, p := range secretPrefixes {
			if strings.HasPrefix(x, p) && len(x) >= len(p)+16 {
				return errs.Invalid("details must not hold secrets (a value looks like a credential)")
			}
		}
	}
	return nil
}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	if secretKeys[k] {
		return true
	}
	for _, s := range secretSuffixes {
		if strings.HasSuffix(k, s) {
			return true
		}
	}
	return false
}
