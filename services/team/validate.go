package team

import (
	"net/mail"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Field limits, the same as the CHECK constraints of migrations/0001, so a
// bad value is a 400 with a readable message, never a constraint error
// (v2.7 surfaced DB length errors as 500).
const (
	maxTeamID          = 50
	maxTeamName        = 100
	maxTeamDescription = 500
	maxTeamIcon        = 10
	maxEmail           = 254
	maxKeyName         = 100
	maxRolesPerRequest = 100
)

var (
	teamIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	colorPattern  = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
	// userIDPattern accepts Clerk ids (user_ + base62) without assuming
	// more about their shape than "safe in a path".
	userIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)
	// opaqueIDPattern is for Clerk invitation ids and admin key ids.
	opaqueIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,100}$`)
)

// validTeamID checks the id of a team to create.
func validTeamID(id string) error {
	switch {
	case id == "" || strings.ContainsFunc(id, unicode.IsSpace):
		return errs.Invalid("Team ID must not be empty or contain spaces")
	case utf8.RuneCountInString(id) > maxTeamID:
		return errs.Invalid("Team ID must be at most 50 characters")
	case !teamIDPattern.MatchString(id):
		return errs.Invalid("Team ID may contain only lowercase letters, digits, '-' and '_', and must start with a letter or digit")
	}
	return nil
}

// teamRef checks a team id given to address an existing team: anything
// that could not be an id is a 400, not a lookup.
func teamRef(id string) error {
	if id == "" || len(id) > maxTeamID || !teamIDPattern.MatchString(id) {
		return errs.Invalid("Invalid team id")
	}
	return nil
}

func userRef(id string) error {
	if !userIDPattern.MatchString(id) {
		return errs.Invalid("Invalid user id")
	}
	return nil
}

func validTeamName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errs.Invalid("Team name must not be empty")
	case utf8.RuneCountInString(name) > maxTeamName:
		return errs.Invalid("Team name must be at most 100 characters")
	case strings.ContainsFunc(name, unicode.IsControl):
		return errs.Invalid("Team name must not contain control characters")
	}
	return nil
}

func validDescription(s string) error {
	if utf8.RuneCountInString(s) > maxTeamDescription {
		return errs.Invalid("Description must be at most 500 characters")
	}
	return nil
}

func validColor(s string) error {
	if !colorPattern.MatchString(s) {
		return errs.Invalid("Color must be a hex color such as #3b82f6")
	}
	return nil
}

func validIcon(s string) error {
	if utf8.RuneCountInString(s) > maxTeamIcon {
		return errs.Invalid("Icon must be at most 10 characters")
	}
	return nil
}

// validEmail accepts a bare address (no display name, no surrounding
// spaces), as an invitation needs.
func validEmail(s string) error {
	if s == "" || len(s) > maxEmail {
		return errs.Invalid("Invalid e-mail address")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return errs.Invalid("Invalid e-mail address")
	}
	return nil
}

// parseTeamRoles checks a team → role map (syntax only; whether the teams
// exist is the store's question).
func parseTeamRoles(in map[string]string) (map[string]auth.Role, error) {
	if len(in) > maxRolesPerRequest {
		return nil, errs.Invalid("Too many team roles")
	}
	out := make(map[string]auth.Role, len(in))
	for team, r := range in {
		if err := teamRef(team); err != nil {
			return nil, errs.Invalid("Team does not exist: " + truncate(team, maxTeamID))
		}
		role, err := auth.ParseRole(r)
		if err != nil {
			return nil, errs.Invalid("Invalid role: " + truncate(r, 20))
		}
		out[team] = role
	}
	return out, nil
}

// truncate keeps error messages short when echoing client input.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
