package server

import (
	"bytes"
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
)

// semantic decodes JSON with numbers kept as written, for comparison.
func semantic(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

func TestNumberize(t *testing.T) {
	details, err := structpb.NewStruct(map[string]any{
		// Strings that look like ids under 64-bit field names stay strings:
		// a Struct is opaque.
		"id": "12", "total": "7", "nested": map[string]any{"id": "3"}, "list": []any{"4", 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := newContractMarshaler()
	for _, c := range []struct {
		name string
		msg  proto.Message
		want string
	}{
		{
			name: "audit page: int64 total and ids; Struct details untouched; escapes",
			msg: &auditv1.ListAuditLogsResponse{Total: 1 << 40, Limit: 50, Data: []*auditv1.AuditLog{
				{Id: -5, Action: `say "hi" \\ "id":"9"`, Details: details, CreatedAt: timestamppb.New(timestamppb.Now().AsTime().Truncate(1e9))},
				{Id: 6, Action: "x"},
			}},
			want: `{"total":1099511627776,"limit":50,"offset":0,"data":[
				{"id":-5,"action":"say \"hi\" \\\\ \"id\":\"9\"","details":{"id":"12","total":"7","nested":{"id":"3"},"list":["4",5]}},
				{"id":6,"action":"x","details":null}]}`,
		},
		{
			name: "map<string, int64> values and Int64Value wrappers",
			msg: &usagev1.GetUsageStatsResponse{TopRoutes: []*usagev1.TopRoute{
				{RoutePath: "/api/x", RouteId: wrapperspb.Int64(9), CallCount: 3, ErrorsByClass: map[string]int64{"4xx": 2, "5xx": 1}},
				{RoutePath: "/api/y", CallCount: 0},
			}},
			want: `{"top_routes":[
				{"route_path":"/api/x","route_id":9,"call_count":3,"errors_by_class":{"4xx":2,"5xx":1}},
				{"route_path":"/api/y","route_id":null,"call_count":0,"errors_by_class":{}}]}`,
		},
		{
			name: "map<string, string> values that look like numbers stay strings",
			msg:  &teamv1.Invitation{Id: "inv_1", TeamRoles: map[string]string{"42": "7"}, CreatedAt: 1762585965000},
			want: `{"id":"inv_1","team_roles":{"42":"7"},"created_at":1762585965000}`,
		},
		{
			name: "camelCase fields and Int64Value",
			msg:  &teamv1.User{Id: "user_1", CreatedAt: 5, LastSignInAt: wrapperspb.Int64(1762585965000)},
			want: `{"id":"user_1","createdAt":5,"lastSignInAt":1762585965000,"publicMetadata":null}`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := m.Marshal(c.msg)
			if err != nil {
				t.Fatal(err)
			}
			got := semantic(t, out).(map[string]any)
			want := semantic(t, []byte(c.want)).(map[string]any)
			assertSubset(t, "", want, got)
			// Nothing is lost: protojson reads numbers for int64 fields.
			back := c.msg.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal(out, back); err != nil {
				t.Fatalf("protojson cannot read it back: %v\n%s", err, out)
			}
			if !proto.Equal(back, c.msg) {
				t.Fatalf("round trip changed the message\n got %v\nwant %v", back, c.msg)
			}
		})
	}
}

// assertSubset checks that every key of want is in got with an equal value
// (recursively for objects), so that cases need not spell out every field.
func assertSubset(t *testing.T, path string, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			t.Errorf("%s: got %#v, want an object", path, got)
			return
		}
		for k, wv := range w {
			gv, present := g[k]
			if !present {
				t.Errorf("%s.%s: missing", path, k)
				continue
			}
			assertSubset(t, path+"."+k, wv, gv)
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			t.Errorf("%s: got %#v, want %d elements", path, got, len(w))
			return
		}
		for i := range w {
			assertSubset(t, path+"[]", w[i], g[i])
		}
	default:
		if want != got {
			t.Errorf("%s: got %#v (%T), want %#v (%T)", path, got, got, want, want)
		}
	}
}

func TestNumberizeList(t *testing.T) {
	m := newContractMarshaler()
	for _, c := range []struct {
		name string
		v    any
		want string
	}{
		{"nil list", []*tokenv1.Token(nil), `[]`},
		{"messages with int64", []*tokenv1.Token{{Id: 1, Name: "a"}, {Id: 2, Name: "b"}}, `[{"id":1},{"id":2}]`},
		{"messages without int64", []*teamv1.Team{{Id: "t1"}, {Id: "t2"}}, `[{"id":"t1"},{"id":"t2"}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := m.Marshal(c.v)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := semantic(t, out).([]any)
			want := semantic(t, []byte(c.want)).([]any)
			if !ok || len(got) != len(want) {
				t.Fatalf("got %s, want %s", out, c.want)
			}
			for i := range want {
				assertSubset(t, "", want[i], got[i])
			}
		})
	}
}

func TestNumberizeRefusesBrokenJSON(t *testing.T) {
	md := (&tokenv1.Token{}).ProtoReflect().Descriptor()
	for _, in := range []string{``, `{`, `{"id":"1"`, `{"id":"1"}x`, `{"name":"unterminated}`, `{"id" "1"}`, `[1,2`} {
		if out, err := numberize(nil, []byte(in), shape{msg: rewriteInfo(md)}); err == nil {
			t.Errorf("numberize(%q) = %q, want an error", in, out)
		}
	}
}
