package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
)

// seedTrail records a small trail across teams, one event a minute from
// t0: ids 1..8.
func seedTrail(t *testing.T, f *fixture) {
	t.Helper()
	rows := []struct{ id, action, entity, team, actor string }{
		{"1", "create", "token", "alpha", "ann"},
		{"2", "update", "token", "alpha", "ann"},
		{"3", "create", "token", "beta", "ben"},
		{"4", "create", "route", "", "cid"},
		{"5", "reveal", "token", "alpha", "ben"},
		{"6", "delete", "token", "beta", "ann"},
		{"7", "create", "team", "core-team", "cid"},
		{"8", "update", "route", "", "ann"},
	}
	var batch []*auditv1.AuditEvent
	for i, r := range rows {
		e := ev("e"+r.id, r.action, r.entity, r.team, map[string]any{"name": "=HYPERLINK(\"x\")", "n": float64(i + 1)})
		e.EntityId = r.id
		e.Actor.Id, e.Actor.Email = "user_"+r.actor, strings.ToUpper(r.actor[:1])+r.actor[1:]+"@Example.com"
		e.OccurredAt = timestamppb.New(t0.Add(time.Duration(i) * time.Minute))
		batch = append(batch, e)
	}
	f.record(t, batch...)
}

func ids(logs []*auditv1.AuditLog) []int64 {
	var out []int64
	for _, l := range logs {
		out = append(out, l.Id)
	}
	return out
}

func TestListFiltersAndPages(t *testing.T) {
	f := newFixture(t)
	seedTrail(t, f)
	cases := []struct {
		name  string
		req   *auditv1.ListAuditLogsRequest
		total int64
		ids   []int64
	}{
		{"everything, newest first", &auditv1.ListAuditLogsRequest{}, 8, []int64{8, 7, 6, 5, 4, 3, 2, 1}},
		{"page", &auditv1.ListAuditLogsRequest{Limit: wrapperspb.Int32(3), Offset: 2}, 8, []int64{6, 5, 4}},
		{"past the end", &auditv1.ListAuditLogsRequest{Offset: 100}, 8, nil},
		{"action", &auditv1.ListAuditLogsRequest{Action: "create"}, 4, []int64{7, 4, 3, 1}},
		{"entity type", &auditv1.ListAuditLogsRequest{EntityType: "route"}, 2, []int64{8, 4}},
		{"unknown entity type", &auditv1.ListAuditLogsRequest{EntityType: "user"}, 0, nil},
		{"team", &auditv1.ListAuditLogsRequest{TeamId: "beta"}, 2, []int64{6, 3}},
		{"actor id", &auditv1.ListAuditLogsRequest{Actor: "user_ben"}, 2, []int64{5, 3}},
		{"actor e-mail, any case", &auditv1.ListAuditLogsRequest{Actor: "cid@example.COM"}, 2, []int64{7, 4}},
		{"from", &auditv1.ListAuditLogsRequest{From: timestamppb.New(t0.Add(5 * time.Minute))}, 3, []int64{8, 7, 6}},
		{"from and to, inclusive", &auditv1.ListAuditLogsRequest{From: timestamppb.New(t0.Add(time.Minute)), To: timestamppb.New(t0.Add(2 * time.Minute))}, 2, []int64{3, 2}},
		{"combined", &auditv1.ListAuditLogsRequest{Action: "create", EntityType: "token", TeamId: "alpha"}, 1, []int64{1}},
		{"combined page", &auditv1.ListAuditLogsRequest{Actor: "user_ann", Limit: wrapperspb.Int32(2), Offset: 1}, 4, []int64{6, 2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := f.client.ListAuditLogs(as(f.admin), c.req)
			if err != nil {
				t.Fatal(err)
			}
			if r.Total != c.total || !slices.Equal(ids(r.Data), c.ids) {
				t.Fatalf("total %d ids %v, want %d %v", r.Total, ids(r.Data), c.total, c.ids)
			}
			wantLimit := int32(50)
			if c.req.Limit != nil {
				wantLimit = c.req.Limit.Value
			}
			if r.Limit != wantLimit || r.Offset != c.req.Offset {
				t.Fatalf("limit/offset echoed %d/%d", r.Limit, r.Offset)
			}
		})
	}
	t.Run("shape", func(t *testing.T) {
		r, err := f.client.ListAuditLogs(as(f.admin), &auditv1.ListAuditLogsRequest{Limit: wrapperspb.Int32(1), Offset: 3})
		if err != nil {
			t.Fatal(err)
		}
		l := r.Data[0] // event 5: a reveal in alpha by ben
		if l.Id != 5 || l.Action != "reveal" || l.EntityType != "token" || l.EntityId != "5" ||
			!l.CreatedAt.AsTime().Equal(t0.Add(4*time.Minute)) || l.TeamId.GetValue() != "alpha" ||
			l.Actor.GetId() != "user_ben" || l.Actor.GetEmail() != "Ben@Example.com" || l.Actor.GetType() != "user" ||
			l.RequestId.GetValue() != "req-e5" || l.ClientIp.GetValue() != "203.0.113.7" || l.UserAgent.GetValue() != "test-agent/1.0" {
			t.Fatalf("%+v", l)
		}
		if l.Details.AsMap()["n"] != 5.0 {
			t.Fatalf("details %v", l.Details.AsMap())
		}
		r, _ = f.client.ListAuditLogs(as(f.admin), &auditv1.ListAuditLogsRequest{EntityType: "route", Limit: wrapperspb.Int32(1)})
		if r.Data[0].TeamId != nil {
			t.Fatalf("team-less event has team %v", r.Data[0].TeamId)
		}
	})
}

func TestListRefusesBadFilters(t *testing.T) {
	f := newFixture(t)
	seedTrail(t, f)
	cases := map[string]*auditv1.ListAuditLogsRequest{
		"limit 0":          {Limit: wrapperspb.Int32(0)},
		"limit over 200":   {Limit: wrapperspb.Int32(201)},
		"negative limit":   {Limit: wrapperspb.Int32(-1)},
		"negative offset":  {Offset: -1},
		"malformed action": {Action: "create'; --"},
		"malformed entity": {EntityType: "Token"},
		"from after to":    {From: timestamppb.New(t0.Add(time.Hour)), To: timestamppb.New(t0)},
		"invalid time":     {From: &timestamppb.Timestamp{Seconds: 1, Nanos: -5}},
		"actor too long":   {Actor: strings.Repeat("a", 321)},
		"team id too long": {TeamId: strings.Repeat("t", 65)},
		"NUL in actor":     {Actor: "a\x00"},
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := f.client.ListAuditLogs(as(f.admin), req); !isCode(err, codes.InvalidArgument) {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			stream, err := f.client.ExportAuditLogs(as(f.admin), &auditv1.ExportAuditLogsRequest{
				Action: req.Action, EntityType: req.EntityType, TeamId: req.TeamId, Actor: req.Actor, From: req.From, To: req.To})
			if err == nil {
				_, err = stream.Recv()
			}
			if strings.Contains(name, "limit") || strings.Contains(name, "offset") {
				return // not export filters
			}
			if !isCode(err, codes.InvalidArgument) {
				t.Fatalf("export: got %v, want InvalidArgument before any chunk", err)
			}
		})
	}
}

func TestReadsAreScoped(t *testing.T) {
	f := newFixture(t)
	seedTrail(t, f)
	cases := []struct {
		name string
		cred string
		ids  []int64
	}{
		{"global admin sees everything", f.admin, []int64{8, 7, 6, 5, 4, 3, 2, 1}},
		{"alpha admin sees alpha", f.alice, []int64{5, 2, 1}},
		{"beta viewer sees beta", f.bob, []int64{6, 3}},
		{"core-team member sees core-team and team-less events", f.carol, []int64{8, 7, 4}},
		{"no role, nothing", f.nobody, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := f.client.ListAuditLogs(as(c.cred), &auditv1.ListAuditLogsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(r.Data), c.ids) || r.Total != int64(len(c.ids)) {
				t.Fatalf("ids %v total %d, want %v", ids(r.Data), r.Total, c.ids)
			}
			st, err := f.client.GetStats(as(c.cred), &auditv1.GetStatsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(st.RecentActivity) != len(c.ids) {
				t.Fatalf("stats show %d events, want %d", len(st.RecentActivity), len(c.ids))
			}
			csvIDs := exportIDs(t, f, c.cred, &auditv1.ExportAuditLogsRequest{})
			if !slices.Equal(csvIDs, c.ids) {
				t.Fatalf("export ids %v, want %v", csvIDs, c.ids)
			}
		})
	}
	t.Run("asking for another team's events is forbidden", func(t *testing.T) {
		_, err := f.client.ListAuditLogs(as(f.alice), &auditv1.ListAuditLogsRequest{TeamId: "beta"})
		if !isCode(err, codes.PermissionDenied) {
			t.Fatalf("got %v", err)
		}
		stream, err := f.client.ExportAuditLogs(as(f.alice), &auditv1.ExportAuditLogsRequest{TeamId: "beta"})
		if err == nil {
			_, err = stream.Recv()
		}
		if !isCode(err, codes.PermissionDenied) {
			t.Fatalf("export: got %v", err)
		}
	})
	t.Run("anonymous callers get nothing", func(t *testing.T) {
		if _, err := f.client.ListAuditLogs(context.Background(), &auditv1.ListAuditLogsRequest{}); code(err) != codes.Unauthenticated {
			t.Fatalf("list: %v", err)
		}
		if _, err := f.client.GetStats(context.Background(), &auditv1.GetStatsRequest{}); code(err) != codes.Unauthenticated {
			t.Fatalf("stats: %v", err)
		}
	})
}

// export runs ExportAuditLogs and returns the CSV document and the chunks.
func export(t *testing.T, f *fixture, cred string, req *auditv1.ExportAuditLogsRequest) ([]byte, int) {
	t.Helper()
	stream, err := f.client.ExportAuditLogs(as(cred), req)
	if err != nil {
		t.Fatal(err)
	}
	var doc bytes.Buffer
	chunks := 0
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return doc.Bytes(), chunks
		}
		if err != nil {
			t.Fatal(err)
		}
		chunks++
		doc.Write(m.Chunk)
	}
}

func exportIDs(t *testing.T, f *fixture, cred string, req *auditv1.ExportAuditLogsRequest) []int64 {
	t.Helper()
	doc, _ := export(t, f, cred, req)
	recs, err := csv.NewReader(bytes.NewReader(doc)).ReadAll()
	if err != nil {
		t.Fatalf("export is not CSV: %v\n%s", err, doc)
	}
	if !slices.Equal(recs[0], csvHeader) {
		t.Fatalf("header %v", recs[0])
	}
	var out []int64
	for _, r := range recs[1:] {
		var id int64
		for _, c := range r[0] {
			id = id*10 + int64(c-'0')
		}
		out = append(out, id)
	}
	return out
}

func TestExport(t *testing.T) {
	f := newFixture(t)
	seedTrail(t, f)
	t.Run("filters", func(t *testing.T) {
		got := exportIDs(t, f, f.admin, &auditv1.ExportAuditLogsRequest{Action: "create", From: timestamppb.New(t0.Add(time.Minute))})
		if !slices.Equal(got, []int64{7, 4, 3}) {
			t.Fatalf("ids %v", got)
		}
		got = exportIDs(t, f, f.admin, &auditv1.ExportAuditLogsRequest{Actor: "ANN@example.com", TeamId: "alpha"})
		if !slices.Equal(got, []int64{2, 1}) {
			t.Fatalf("ids %v", got)
		}
	})
	t.Run("cells", func(t *testing.T) {
		doc, _ := export(t, f, f.admin, &auditv1.ExportAuditLogsRequest{EntityType: "route", Action: "create"})
		if !bytes.Contains(doc, []byte("\r\n")) {
			t.Fatalf("rows are not CRLF-terminated")
		}
		recs, err := csv.NewReader(bytes.NewReader(doc)).ReadAll()
		if err != nil || len(recs) != 2 {
			t.Fatalf("%v %q", err, doc)
		}
		row := map[string]string{}
		for i, h := range csvHeader {
			row[h] = recs[1][i]
		}
		want := map[string]string{"id": "4", "created_at": "2025-11-08T07:03:00Z", "action": "create", "entity_type": "route",
			"entity_id": "4", "team_id": "", "actor_type": "user", "actor_id": "user_cid", "actor_email": "Cid@Example.com",
			"actor_name": "User e4", "details": `{"n":4,"name":"=HYPERLINK(\"x\")"}`, "request_id": "req-e4",
			"client_ip": "203.0.113.7", "user_agent": "test-agent/1.0"}
		for k, v := range want {
			if row[k] != v {
				t.Errorf("%s = %q, want %q", k, row[k], v)
			}
		}
	})
	t.Run("formula cells are defused", func(t *testing.T) {
		f := newFixture(t)
		e := ev("f1", "create", "token", "alpha", map[string]any{"x": 1})
		e.Actor.Name, e.EntityId, e.UserAgent, e.Actor.Email = "=cmd|' /C calc'!A0", "+1", "@SUM(A1)", "-2+3@x.com"
		f.record(t, e)
		doc, _ := export(t, f, f.admin, &auditv1.ExportAuditLogsRequest{})
		recs, _ := csv.NewReader(bytes.NewReader(doc)).ReadAll()
		for _, cell := range recs[1] {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("cell %q starts a formula", cell)
			}
		}
		if !slices.Contains(recs[1], "'=cmd|' /C calc'!A0") || !slices.Contains(recs[1], "'+1") {
			t.Errorf("row %q", recs[1])
		}
	})
	t.Run("streams many pages in bounded chunks", func(t *testing.T) {
		f := newFixture(t)
		oldPage, oldChunk := exportPage, exportChunk
		exportPage, exportChunk = 7, 1024
		t.Cleanup(func() { exportPage, exportChunk = oldPage, oldChunk })
		f.seq(t, 100)
		doc, chunks := export(t, f, f.admin, &auditv1.ExportAuditLogsRequest{})
		recs, err := csv.NewReader(bytes.NewReader(doc)).ReadAll()
		if err != nil || len(recs) != 101 {
			t.Fatalf("%d records, %v", len(recs), err)
		}
		if chunks < len(doc)/2048 {
			t.Fatalf("%d chunks for %d bytes", chunks, len(doc))
		}
		if recs[1][0] != "100" || recs[100][0] != "1" {
			t.Fatalf("order: first %s last %s", recs[1][0], recs[100][0])
		}
	})
	t.Run("empty export is the header", func(t *testing.T) {
		doc, chunks := export(t, f, f.nobody, &auditv1.ExportAuditLogsRequest{})
		if string(doc) != strings.Join(csvHeader, ",")+"\r\n" || chunks != 1 {
			t.Fatalf("%q in %d chunks", doc, chunks)
		}
	})
}

func TestStats(t *testing.T) {
	f := newFixture(t)
	seedTrail(t, f)
	f.seq(t, 12) // ids 9..20, alpha

	st, err := f.client.GetStats(as(f.admin), &auditv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The token service does not answer yet: counts degrade to 0.
	if st.TotalTokens != 0 || st.TotalRoutes != 0 || len(st.RecentActivity) != 10 {
		t.Fatalf("%+v", st)
	}
	a := st.RecentActivity[0]
	// details is a JSON-encoded string, as v2.7's /stats page reads it.
	var d map[string]any
	if err := json.Unmarshal([]byte(a.Details), &d); err != nil {
		t.Fatalf("details %q is not a JSON-encoded object: %v", a.Details, err)
	}
	if a.Action != "create" || a.EntityType != "token" || d["name"] != "t12" || !a.CreatedAt.AsTime().Equal(t0) {
		t.Fatalf("newest activity %+v", a)
	}

	f.tokens.err, f.tokens.resp = nil, &tokenv1.GetTokenStatsResponse{TotalTokens: 12, TotalRoutes: 5}
	st, err = f.client.GetStats(as(f.bob), &auditv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalTokens != 12 || st.TotalRoutes != 5 || f.tokens.last.AllTeams || !slices.Equal(f.tokens.last.TeamIds, []string{"beta"}) {
		t.Fatalf("%+v asked %+v", st, f.tokens.last)
	}
	for _, a := range st.RecentActivity {
		var d map[string]any
		if err := json.Unmarshal([]byte(a.Details), &d); err != nil {
			t.Fatal(err)
		}
		if e, _ := d["name"].(string); strings.HasPrefix(e, "t") {
			t.Fatalf("bob sees an alpha event: %+v", a)
		}
	}
}

func TestListRecentEvents(t *testing.T) {
	f := newFixture(t)
	seedTrail(t, f)
	cases := []struct {
		req *auditv1.ListRecentEventsRequest
		ids []int64
	}{
		{&auditv1.ListRecentEventsRequest{AllTeams: true, Limit: 3}, []int64{8, 7, 6}},
		{&auditv1.ListRecentEventsRequest{TeamIds: []string{"alpha"}}, []int64{5, 2, 1}},
		{&auditv1.ListRecentEventsRequest{TeamIds: []string{"core-team"}}, []int64{8, 7, 4}},
		{&auditv1.ListRecentEventsRequest{TeamIds: []string{""}}, nil},
		{&auditv1.ListRecentEventsRequest{}, nil},
	}
	for _, c := range cases {
		r, err := f.client.ListRecentEvents(as(f.service), c.req)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(r.Events), c.ids) {
			t.Errorf("%v: ids %v, want %v", c.req, ids(r.Events), c.ids)
		}
	}
	if _, err := f.client.ListRecentEvents(as(f.service), &auditv1.ListRecentEventsRequest{AllTeams: true, Limit: 101}); !isCode(err, codes.InvalidArgument) {
		t.Errorf("limit 101: %v", err)
	}
}

// TestReadsPresentOldDetailsAsText: an event stored before details had
// v2.7's shape (a token update's name as {"from","to"}) reads with string
// name and operator keys, so the dashboard can render it; the stored row,
// and so the chain, are unchanged.
func TestReadsPresentOldDetailsAsText(t *testing.T) {
	f := newFixture(t)
	f.record(t, ev("old-1", "update", "token", "alpha", map[string]any{
		"name": map[string]any{"from": "a", "to": "b"}, "team_name": 7.0, "updated_by_email": []any{"x"},
		"changes": map[string]any{"kept": true}}))
	r, err := f.client.ListAuditLogs(as(f.admin), &auditv1.ListAuditLogsRequest{})
	if err != nil || len(r.Data) != 1 {
		t.Fatalf("list: %v %v", r, err)
	}
	d := r.Data[0].Details.AsMap()
	if d["name"] != "b" || d["team_name"] != "7" || d["updated_by_email"] != `["x"]` {
		t.Errorf("details read as %v", d)
	}
	if _, ok := d["changes"].(map[string]any); !ok {
		t.Errorf("keys the dashboard does not render are left as they are: %v", d["changes"])
	}
	if v := f.verify(t); !v.Ok {
		t.Errorf("chain broken: %v", v)
	}
}
