package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Audit details as v2.7's dashboard reads them (contract §7.2, §8), for
// every event TestAuditCoverage produces, in each of the three REST reads
// that return details: GET /api/dashboard/audit-logs (data[].details, an
// object), GET /api/dashboard/overview (recent_logs[].details, an object)
// and GET /api/stats (recent_activity[].details, a JSON-encoded string).
// The dashboard renders details.name and the *_by_email keys as text, and
// React refuses an object there: a page crashes on one such row.

// stepReads is what the three reads return for the events of one step.
type stepReads struct {
	AuditLogs []map[string]any `json:"audit_logs"`
	Overview  []map[string]any `json:"overview_recent_logs"`
	Stats     []map[string]any `json:"stats_recent_activity"`
}

// captureReads waits until the n events of the call with request id reqID
// are in the trail, then reads the three endpoints (as a global ADMIN, who
// sees every event) and returns those events as each returns them. The
// three list the same newest events in the same order (newest first), so
// the events are matched by position; a read that raced a later event is
// retried.
func captureReads(t *testing.T, s *stack, reqID string, n int) stepReads {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var page struct{ Data []map[string]any }
		r := s.teamMust(t, 200, "GET", "/api/dashboard/audit-logs?limit=10", s.adminKey, "")
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatalf("audit logs: %v: %s", err, r.Body)
		}
		var at []int
		for i, row := range page.Data {
			if row["request_id"] == reqID {
				at = append(at, i)
			}
		}
		if len(at) >= n {
			var overview struct {
				RecentLogs []map[string]any `json:"recent_logs"`
			}
			if err := json.Unmarshal(s.teamMust(t, 200, "GET", "/api/dashboard/overview", s.adminKey, "").Body, &overview); err != nil {
				t.Fatal(err)
			}
			var stats struct {
				RecentActivity []map[string]any `json:"recent_activity"`
			}
			if err := json.Unmarshal(s.teamMust(t, 200, "GET", "/api/stats", s.adminKey, "").Body, &stats); err != nil {
				t.Fatal(err)
			}
			out, same := stepReads{}, true
			for _, i := range at {
				if i >= len(overview.RecentLogs) || i >= len(stats.RecentActivity) {
					same = false
					break
				}
				row, o, st := page.Data[i], overview.RecentLogs[i], stats.RecentActivity[i]
				same = same && o["action"] == row["action"] && o["entity_type"] == row["entity_type"] && o["entity_id"] == row["entity_id"] &&
					st["action"] == row["action"] && st["entity_type"] == row["entity_type"] && st["created_at"] == row["created_at"]
				out.AuditLogs, out.Overview, out.Stats = append(out.AuditLogs, row), append(out.Overview, o), append(out.Stats, st)
			}
			if same {
				return out
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the 10 newest audit events do not hold the %d events of %s (or the reads disagree)", n, reqID)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dashboardText are the details keys the dashboard renders as text
// (contract §7.2: recent_logs[].details.{name,path,team_name,description,
// backend_url,*_by_email}); dashboardLists are those it renders as lists.
var (
	dashboardText  = []string{"name", "path", "team_name", "description", "backend_url", "created_by_email", "updated_by_email", "deleted_by_email"}
	dashboardLists = []string{"scopes", "tags"}
)

// v27Keys are the details keys v2.7 wrote for the actions it audited
// (contract §8), with their types ("string", "list"). They must all be
// there, with those types.
var v27Keys = map[string]map[string]string{
	"create token": {"name": "string", "team_id": "string", "team_name": "string", "scopes": "list", "created_by": "string",
		"created_by_email": "string", "description": "string"},
	"update token": {"name": "string", "team_id": "string", "team_name": "string", "scopes": "list", "updated_by": "string",
		"updated_by_email": "string"},
	"delete token": {"name": "string", "team_id": "string", "team_name": "string", "deleted_by": "string", "deleted_by_email": "string"},
	"create route": {"name": "string", "path": "string", "backend_url": "string", "tags": "list", "created_by": "string",
		"created_by_email": "string"},
	"update route": {"name": "string", "backend_url": "string", "description": "string", "tags": "list", "path": "string",
		"updated_by": "string", "updated_by_email": "string"},
	"delete route": {"name": "string", "path": "string", "deleted_by": "string", "deleted_by_email": "string"},
}

// actorKey is the details key that names the operator of action, as
// services/internal/auditlog chooses it.
func actorKey(action string) string {
	switch action {
	case "create":
		return "created_by"
	case "delete", "revoke":
		return "deleted_by"
	}
	return "updated_by"
}

// eventExpect is what the dashboard must be able to show of one event.
type eventExpect struct {
	name       string // details.name
	actorID    string // details.<verb>_by
	actorLabel string // details.<verb>_by_email
}

// checkDetails checks one event's details as one read returns them
// against v2.7's keys and types and the expected name and operator.
func checkDetails(t *testing.T, where, action, entityType string, d map[string]any, want eventExpect) {
	t.Helper()
	for _, k := range dashboardText {
		if v, ok := d[k]; ok {
			if _, isString := v.(string); !isString {
				t.Errorf("%s: details.%s is %T (%v), the dashboard renders it as text", where, k, v, v)
			}
		}
	}
	for _, k := range dashboardLists {
		if v, ok := d[k]; ok {
			list, isList := v.([]any)
			if !isList {
				t.Errorf("%s: details.%s is %T, want a list of strings", where, k, v)
			}
			for _, item := range list {
				if _, isString := item.(string); !isString {
					t.Errorf("%s: details.%s holds %T, want strings", where, k, item)
				}
			}
		}
	}
	if got, _ := d["name"].(string); got != want.name {
		t.Errorf("%s: details.name = %#v, want %q", where, d["name"], want.name)
	}
	by := actorKey(action)
	if d[by] != want.actorID || d[by+"_email"] != want.actorLabel {
		t.Errorf("%s: details.%s = %#v, %s_email = %#v; want %q, %q", where, by, d[by], by, d[by+"_email"], want.actorID, want.actorLabel)
	}
	for _, other := range []string{"created_by", "updated_by", "deleted_by"} {
		if other == by {
			continue
		}
		if _, ok := d[other+"_email"]; ok {
			t.Errorf("%s: details name the operator twice (%s_email and %s_email)", where, by, other)
		}
	}
	for k, typ := range v27Keys[action+" "+entityType] {
		v, ok := d[k]
		switch {
		case !ok:
			t.Errorf("%s: details lack v2.7's %q", where, k)
		case typ == "string":
			if _, isString := v.(string); !isString {
				t.Errorf("%s: details.%s is %T, v2.7 wrote a string", where, k, v)
			}
		case typ == "list":
			if _, isList := v.([]any); !isList {
				t.Errorf("%s: details.%s is %T, v2.7 wrote a list", where, k, v)
			}
		}
	}
}

// checkReads checks the events of one step in the three reads.
func checkReads(t *testing.T, step string, reads stepReads, want func(action, entityType, entityID string) eventExpect) {
	t.Helper()
	for i, row := range reads.AuditLogs {
		action, _ := row["action"].(string)
		entityType, _ := row["entity_type"].(string)
		entityID, _ := row["entity_id"].(string)
		exp := want(action, entityType, entityID)
		where := fmt.Sprintf("%s: %s %s %s", step, action, entityType, entityID)

		d, ok := row["details"].(map[string]any)
		if !ok {
			t.Errorf("%s: audit-logs details is %T, want an object", where, row["details"])
		} else {
			checkDetails(t, where+" (audit-logs)", action, entityType, d, exp)
		}
		d, ok = reads.Overview[i]["details"].(map[string]any)
		if !ok {
			t.Errorf("%s: overview recent_logs details is %T, want an object", where, reads.Overview[i]["details"])
		} else {
			checkDetails(t, where+" (overview)", action, entityType, d, exp)
		}
		// /api/stats: a JSON-encoded string of the same object (v2.7).
		s, ok := reads.Stats[i]["details"].(string)
		var sd map[string]any
		if !ok || json.Unmarshal([]byte(s), &sd) != nil || sd == nil {
			t.Errorf("%s: stats recent_activity details is %T %v, want a JSON-encoded object", where, reads.Stats[i]["details"], reads.Stats[i]["details"])
		} else {
			checkDetails(t, where+" (stats)", action, entityType, sd, exp)
		}
	}
}

// volatileShapeKeys vary from run to run; their values are masked in the
// golden files (timestamps, admin key prefixes), as is the audit row id.
var volatileShapeKeys = []string{"created_at", "expires_at", "previous_secret_valid_until", "prefix"}

// assertShapeGolden compares the reads of one step with
// testdata/audit_shapes/<name>.json, after replacing the ids that differ
// between runs (random admin key and invitation ids) with placeholders and
// masking volatileShapeKeys; inside the JSON-encoded details of /api/stats
// too, which stay strings.
func assertShapeGolden(t *testing.T, name string, reads stepReads, placeholders map[string]string) {
	t.Helper()
	ids := make([]string, 0, len(placeholders))
	for id := range placeholders {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { return len(b) - len(a) }) // longest first
	var replace func(v any) any
	replace = func(v any) any {
		switch x := v.(type) {
		case string:
			for _, id := range ids {
				x = strings.ReplaceAll(x, id, placeholders[id])
			}
			return x
		case map[string]any:
			for k, item := range x {
				x[k] = replace(item)
			}
		case []any:
			for i := range x {
				x[i] = replace(x[i])
			}
		}
		return v
	}
	for _, row := range reads.AuditLogs {
		row["id"] = "<volatile>"
	}
	for _, st := range reads.Stats {
		if s, ok := st["details"].(string); ok {
			var d any
			if json.Unmarshal([]byte(s), &d) == nil {
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				enc.SetEscapeHTML(false)
				_ = enc.Encode(mask(replace(d), volatileShapeKeys))
				st["details"] = strings.TrimSuffix(buf.String(), "\n")
			}
		}
	}
	b, err := json.Marshal(reads)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	_ = json.Unmarshal(b, &v)
	b, _ = json.Marshal(replace(v))
	assertGolden(t, filepath.Join("audit_shapes", name+".json"), b, volatileShapeKeys)
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// shapeFileName names the golden file of step i.
func shapeFileName(i int, endpoint, as string) string {
	return fmt.Sprintf("%02d_%s_%s", i, strings.Trim(nonWord.ReplaceAllString(strings.ToLower(endpoint), "_"), "_"), as)
}
