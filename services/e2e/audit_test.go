package e2e

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
)

// auditTeam is the team the audit tests record their events in, so their
// golden files do not depend on what other services write to the trail.
const auditTeam = "e2e-audit"

// envOf returns the value of KEY in the stack's common environment.
// auditClient calls the audit service directly with the token service's
// credential, as the token service's outbox relay does.
func (s *stack) auditClient(t *testing.T) auditv1.AuditServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(s.envOf("TM_AUDIT_ADDR"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.ServiceCallCredentials{Secret: []byte(s.envOf("TM_SERVICE_SECRET")), Service: "token"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return auditv1.NewAuditServiceClient(conn)
}

func auditEvents(t *testing.T) []*auditv1.AuditEvent {
	base := time.Date(2025, 11, 8, 7, 0, 0, 0, time.UTC)
	type row struct {
		action, entity, id string
		details            map[string]any
	}
	rows := []row{
		{"create", "token", "40", map[string]any{"name": "n8n-image", "team_id": auditTeam, "scopes": []any{"*"}, "created_by_email": "joey@example.com"}},
		{"update", "token", "40", map[string]any{"name": "n8n-image-2", "updated_by_email": "joey@example.com"}},
		{"reveal", "token", "40", map[string]any{"name": "n8n-image-2"}},
		{"rotate", "token", "40", map[string]any{"name": "n8n-image-2", "overlap_hours": 24}},
		{"delete", "token", "40", map[string]any{"name": "=cmd|' /C calc'!A0", "deleted_by_email": "joey@example.com"}},
	}
	var out []*auditv1.AuditEvent
	for i, r := range rows {
		d, err := structpb.NewStruct(r.details)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &auditv1.AuditEvent{
			EventId: fmt.Sprintf("e2e-audit-%d", i), OccurredAt: timestamppb.New(base.Add(time.Duration(i) * time.Minute)),
			Actor:  &auditv1.Actor{Type: "user", Id: "user_joey", Email: "joey@example.com", Name: "Joey"},
			Action: r.action, EntityType: r.entity, EntityId: r.id, TeamId: auditTeam, Details: d,
			RequestId: fmt.Sprintf("req-%d", i), ClientIp: "203.0.113.7", UserAgent: "Mozilla/5.0",
		})
	}
	return out
}

func TestAuditTrail(t *testing.T) {
	s := startStack(t)
	// A viewer of the audit team, and a member of another team only.
	s.sql(t,
		`INSERT INTO team.teams (id, name) VALUES ('`+auditTeam+`', 'E2E Audit'), ('e2e-other', 'Other')`,
		`INSERT INTO team.memberships (user_id, team_id, role) VALUES ('user_audit_viewer', '`+auditTeam+`', 'VIEWER'),
		                                                            ('user_outsider', 'e2e-other', 'ADMIN')`)
	viewer := s.clerk.SessionToken(t, "user_audit_viewer")
	outsider := s.clerk.SessionToken(t, "user_outsider")

	client := s.auditClient(t)
	events := auditEvents(t)
	for range 2 { // the second delivery is an outbox redelivery
		if _, err := client.Record(context.Background(), &auditv1.RecordRequest{Events: events}); err != nil {
			t.Fatalf("Record: %v", err)
		}
	}

	t.Run("list", func(t *testing.T) {
		r := s.getGolden(t, "/api/dashboard/audit-logs?limit=3&offset=1&team_id="+auditTeam, viewer, "audit_logs.json", []string{"id"})
		var body struct {
			Total int
			Data  []struct {
				ID      int64
				Details map[string]any
			}
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.Total != 5 || len(body.Data) != 3 {
			t.Fatalf("%s (%v)", r.Body, err)
		}
		if body.Data[0].ID <= body.Data[1].ID {
			t.Errorf("not newest first: %s", r.Body)
		}
	})

	t.Run("list filters", func(t *testing.T) {
		r := s.do("GET", "/api/dashboard/audit-logs?action=reveal&entity_type=token&actor=JOEY@example.com&from=2025-11-08T07:00:00Z&to=2025-11-08T08:00:00Z", viewer, nil)
		var body struct{ Total int }
		if r.Status != 200 || json.Unmarshal(r.Body, &body) != nil || body.Total != 1 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})

	t.Run("outsiders see nothing of the team", func(t *testing.T) {
		r := s.do("GET", "/api/dashboard/audit-logs", outsider, nil)
		if r.Status != 200 || bytes.Contains(r.Body, []byte("joey@example.com")) {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r = s.do("GET", "/api/stats", outsider, nil)
		if r.Status != 200 || bytes.Contains(r.Body, []byte("joey@example.com")) {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if r := s.do("GET", "/api/dashboard/audit-logs?team_id="+auditTeam, outsider, nil); r.Status != 403 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})

	t.Run("bad filters", func(t *testing.T) {
		for _, q := range []string{"limit=0", "limit=201", "limit=abc", "offset=-1", "action=DROP%20TABLE",
			"from=yesterday", "from=2025-11-09T00:00:00Z&to=2025-11-08T00:00:00Z"} {
			for _, path := range []string{"/api/dashboard/audit-logs?", "/api/dashboard/audit-logs/export?"} {
				if strings.HasPrefix(path, "/api/dashboard/audit-logs/export") && (strings.Contains(q, "limit") || strings.Contains(q, "offset")) {
					continue // not export parameters
				}
				r := s.do("GET", path+q, s.adminKey, nil)
				if r.Status != 400 {
					t.Errorf("GET %s%s: %d %s, want 400", path, q, r.Status, r.Body)
					continue
				}
				detail(t, r)
			}
		}
	})

	t.Run("stats", func(t *testing.T) {
		s.getGolden(t, "/api/stats", viewer, "audit_stats.json", nil)
	})

	t.Run("export", func(t *testing.T) {
		r := s.do("GET", "/api/dashboard/audit-logs/export?team_id="+auditTeam, viewer, nil)
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv") {
			t.Fatalf("%d %v %s", r.Status, r.Header, r.Body)
		}
		assertGoldenCSV(t, "audit_export.csv", r.Body)
	})

	t.Run("who may call", func(t *testing.T) {
		for _, path := range []string{"/api/dashboard/audit-logs", "/api/dashboard/audit-logs/export", "/api/dashboard/audit-logs/verify", "/api/stats"} {
			if r := s.do("GET", path, "", nil); r.Status != 401 {
				t.Errorf("GET %s anonymous: %d", path, r.Status)
			}
		}
		if r := s.do("GET", "/api/dashboard/audit-logs/verify", viewer, nil); r.Status != 403 {
			t.Errorf("verify as a viewer: %d %s", r.Status, r.Body)
		}
	})

	t.Run("verify, then tamper", func(t *testing.T) {
		r := s.getGolden(t, "/api/dashboard/audit-logs/verify", s.adminKey, "audit_verify.json", []string{"events_checked"})
		var v struct {
			EventsChecked int64 `json:"events_checked"`
		}
		if json.Unmarshal(r.Body, &v) != nil || v.EventsChecked < 5 {
			t.Fatalf("%s", r.Body)
		}
		// The reveal (third event of the team) is rewritten behind the
		// service's back; the trigger has to be bypassed to do it.
		s.sql(t, `BEGIN; SET LOCAL session_replication_role = replica;
			UPDATE audit.events SET action = 'update' WHERE event_id = 'e2e-audit-2'; COMMIT`)
		id := s.count(t, `SELECT id FROM audit.events WHERE event_id = 'e2e-audit-2'`)
		r = s.do("GET", "/api/dashboard/audit-logs/verify", s.adminKey, nil)
		var broken struct {
			OK    bool  `json:"ok"`
			First int64 `json:"first_broken_id"`
		}
		if r.Status != 200 || json.Unmarshal(r.Body, &broken) != nil || broken.OK || broken.First != id {
			t.Fatalf("after tampering with event %d: %d %s", id, r.Status, r.Body)
		}
	})
}

// assertGoldenCSV compares a CSV export with testdata/<name>, ignoring the
// id column (ids depend on what else the stack recorded first).
func assertGoldenCSV(t *testing.T, name string, body []byte) {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("%s: not CSV: %v\n%s", name, err, body)
	}
	for _, r := range recs[1:] {
		r[0] = "<volatile>"
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.UseCRLF = true
	_ = w.WriteAll(recs)
	path := filepath.Join("testdata", name)
	if updateGolden {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (run with UPDATE_GOLDEN=1 to create it)", name, err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from the golden file:\n got: %s\nwant: %s", name, buf.Bytes(), want)
	}
}
