package deploycheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
)

// binaries maps every binary an image can hold to the package it is built from.
var binaries = map[string]string{
	"token":   "github.com/tokenmanager/tokenmanager/services/cmd/token",
	"team":    "github.com/tokenmanager/tokenmanager/services/cmd/team",
	"audit":   "github.com/tokenmanager/tokenmanager/services/cmd/audit",
	"usage":   "github.com/tokenmanager/tokenmanager/services/cmd/usage",
	"health":  "github.com/tokenmanager/tokenmanager/services/cmd/health",
	"tmctl":   "github.com/tokenmanager/tokenmanager/services/cmd/tmctl",
	"gateway": "github.com/tokenmanager/tokenmanager/gateway/cmd/gateway",
}

// commands lists the container commands each binary accepts; a binary not listed takes none.
var commands = map[string][][]string{
	"tmctl": {{"migrate"}},
}

// grpcServices are the five services, named as their binary, their compose service and the
// TM_<NAME>_ADDR variable through which the others find them.
var grpcServices = []string{"token", "team", "audit", "usage", "health"}

// listenVars are the variables that hold an address a binary listens on.
var listenVars = []string{"TM_GRPC_ADDR", "TM_METRICS_ADDR", "TM_HTTP_ADDR"}

const dockerfilePath = "deploy/docker/Dockerfile"

var (
	repoRoot string // holds docker-compose.yml and go.work
	binDir   string // the binaries, built once by TestMain
)

// requiredEnv is what compose needs to even load: the secrets interpolated with ${VAR:?...}.
var requiredEnv = map[string]string{
	"TM_SERVICE_SECRET":    "deploycheck-service-secret-0123456789abcdef",
	"TOKEN_ENCRYPTION_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	"POSTGRES_PASSWORD":    "0123456789abcdef0123456789abcdef",
}

// optionalEnv sets every pass-through variable too, with a valid value other than the default,
// so that each one reaches -check-config and is validated there. TestCompose fails when compose
// passes through a variable missing here, or when one here is passed to no container.
var optionalEnv = map[string]string{
	"TM_LOG_LEVEL":                   "debug",
	"CLERK_SECRET_KEY":               "sk_test_deploycheck",
	"CLERK_API_URL":                  "https://api.clerk.com/v1",
	"ALLOWED_FRONTEND_ORIGINS":       "https://dashboard.example.com,http://localhost:5173",
	"CF_ACCOUNT_ID":                  "0123456789abcdef0123456789abcdef",
	"CF_API_TOKEN":                   "deploycheck-cloudflare-token",
	"CF_KV_NAMESPACE_ID":             "fedcba9876543210fedcba9876543210",
	"CF_API_BASE_URL":                "https://api.cloudflare.com/client/v4",
	"TM_MAX_BODY_BYTES":              "2097152",
	"TM_TRUSTED_PROXIES":             "10.0.0.0/8,192.0.2.1",
	"TOKEN_ENCRYPTION_KEYS":          "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=,k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	"TM_KV_RATE_LIMIT":               "8",
	"TM_KV_RETRY_MAX_BACKOFF":        "1m",
	"TM_KV_RECONCILE_INTERVAL":       "10m",
	"TM_TOKEN_EXPIRY_SWEEP_INTERVAL": "1m",
	"TM_BOOTSTRAP_ADMIN_KEY":         auth.NewAdminKey(), // valid only with its checksum
	"TM_USER_CACHE_TTL":              "5m",
	"TM_INVITATION_REDIRECT_URL":     "https://dashboard.example.com/sign-up",
	"USAGE_INGEST_SECRET":            "deploycheck-usage-ingest-secret-0123456789",
	"USAGE_INGEST_SECRET_PREVIOUS":   "deploycheck-usage-ingest-previous-0123456789",
	"USAGE_ALLOW_UNSIGNED":           "false",
	"USAGE_RETENTION_DAYS":           "30",
	"USAGE_PARTITIONS_AHEAD":         "3",
	"USAGE_LAST_USED_INTERVAL":       "2s",
}

// notPassed lists, per binary, the variables it reads that compose deliberately does not set,
// each with the reason. Every other variable a binary's -check-config lists must be in its
// container's environment (set, or passed through from the shell and .env), so that an
// operator can set it without editing docker-compose.yml. None today; an entry that compose
// does pass, or that the binary does not read, fails the test.
var notPassed = map[string]map[string]string{}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if repoRoot, err = findRepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "deploycheck:", err)
		return 1
	}
	if binDir, err = os.MkdirTemp("", "deploycheck-bin-"); err != nil {
		fmt.Fprintln(os.Stderr, "deploycheck:", err)
		return 1
	}
	defer os.RemoveAll(binDir)

	// One go build for all of them, from the workspace: the gateway is another module.
	pkgs := make([]string, 0, len(binaries))
	for _, pkg := range binaries {
		pkgs = append(pkgs, pkg)
	}
	sort.Strings(pkgs)
	build := exec.Command("go", append([]string{"build", "-o", binDir + string(filepath.Separator)}, pkgs...)...)
	build.Dir = filepath.Join(repoRoot, "services")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "deploycheck: building the binaries failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "docker-compose.yml")) && fileExists(filepath.Join(dir, "go.work")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no parent folder holds both docker-compose.yml and go.work")
		}
		dir = parent
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func loadProject(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	list := make([]string, 0, len(env))
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	// Only the given environment: neither the test's own nor a developer's .env leaks in.
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(repoRoot, "docker-compose.yml")},
		cli.WithWorkingDirectory(repoRoot),
		cli.WithEnv(list),
	)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return opts.LoadProject(ctx)
}

func merge(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestComposeRequiresSecrets(t *testing.T) {
	for name := range requiredEnv {
		t.Run(name, func(t *testing.T) {
			env := merge(requiredEnv)
			delete(env, name)
			_, err := loadProject(t, env)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("loading docker-compose.yml without %s: got error %v, want one naming %s", name, err, name)
			}
		})
	}
}

func TestCompose(t *testing.T) {
	stages := dockerfileStages(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"required-only", requiredEnv},
		{"all-set", merge(requiredEnv, optionalEnv)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			project, err := loadProject(t, tc.env)
			if err != nil {
				t.Fatalf("loading docker-compose.yml: %v", err)
			}
			checkProject(t, project, stages)
			if tc.name == "all-set" {
				checkOptionalEnvComplete(t, project)
			}
		})
	}
}

// checkOptionalEnvComplete: with optionalEnv set, no pass-through variable stays unset (else
// -check-config never validates it), and every optionalEnv variable reaches some container.
func checkOptionalEnvComplete(t *testing.T, project *types.Project) {
	passed := map[string]bool{}
	for name, svc := range project.Services {
		for k, v := range svc.Environment {
			passed[k] = true
			if v == nil {
				t.Errorf("%s passes %s through, but optionalEnv does not set it, so -check-config never validates it", name, k)
			}
		}
	}
	for _, k := range sortedKeys(optionalEnv) {
		if !passed[k] {
			t.Errorf("optionalEnv sets %s, but no compose service passes it", k)
		}
	}
}

// container is one compose service that runs one of the binaries.
type container struct {
	name   string
	binary string
	svc    types.ServiceConfig
}

func checkProject(t *testing.T, project *types.Project, stages map[string][]string) {
	containers := map[string]*container{} // by compose service name
	used := map[string]bool{}             // binaries some container runs

	for name, svc := range project.Services {
		if svc.Build == nil {
			if svc.Image == "" {
				t.Errorf("%s: neither build nor image", name)
			}
			continue
		}
		binary := svc.Build.Target
		t.Run(name+"/image", func(t *testing.T) { checkImage(t, svc, stages) })
		if _, ok := binaries[binary]; !ok {
			continue // checkImage reported it
		}
		used[binary] = true
		c := &container{name: name, binary: binary, svc: svc}
		containers[name] = c
		t.Run(name+"/command", func(t *testing.T) { checkCommand(t, c) })
		t.Run(name+"/environment", func(t *testing.T) { checkEnvironment(t, c) })
		t.Run(name+"/ports", func(t *testing.T) { checkPorts(t, c) })
	}
	for binary := range binaries {
		if !used[binary] {
			t.Errorf("no compose service runs %s", binary)
		}
	}
	t.Run("peer-addresses", func(t *testing.T) { checkPeers(t, containers) })
	t.Run("depends_on", func(t *testing.T) { checkDependencies(t, project, containers) })
}

// checkImage: built from the repository root with the shared Dockerfile, whose target of that
// name runs the binary of that name.
func checkImage(t *testing.T, svc types.ServiceConfig, stages map[string][]string) {
	b := svc.Build
	dir := b.Context
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(repoRoot, dir)
	}
	if filepath.Clean(dir) != repoRoot {
		t.Errorf("build context %q, want the repository root", b.Context)
	}
	dockerfile := b.Dockerfile
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(dir, dockerfile)
	}
	if filepath.Clean(dockerfile) != filepath.Join(repoRoot, dockerfilePath) {
		t.Errorf("dockerfile %q, want %s", b.Dockerfile, dockerfilePath)
	}
	if _, ok := binaries[b.Target]; !ok {
		t.Fatalf("build target %q is not a binary (want one of %v)", b.Target, sortedKeys(binaries))
	}
	entrypoint, ok := stages[b.Target]
	if !ok {
		t.Fatalf("%s has no stage named %q", dockerfilePath, b.Target)
	}
	if want := []string{"/usr/local/bin/" + b.Target}; !slices.Equal(entrypoint, want) {
		t.Errorf("%s stage %q: ENTRYPOINT %q, want %q", dockerfilePath, b.Target, entrypoint, want)
	}
}

func checkCommand(t *testing.T, c *container) {
	if len(c.svc.Entrypoint) > 0 {
		t.Errorf("entrypoint %q overrides the image's binary", c.svc.Entrypoint)
	}
	cmd := []string(c.svc.Command)
	if len(cmd) == 0 {
		return
	}
	for _, accepted := range commands[c.binary] {
		if slices.Equal(cmd, accepted) {
			return
		}
	}
	t.Errorf("command %q: %s accepts only %q", cmd, c.binary, commands[c.binary])
}

// checkEnvironment runs `<binary> -check-config` with exactly the environment compose would
// give the container, then compares what compose sets with what the binary reads.
func checkEnvironment(t *testing.T, c *container) {
	var env []string
	for k, v := range c.svc.Environment {
		if v != nil { // unset pass-through variables are not set in the container either
			env = append(env, k+"="+*v)
		}
	}
	vars := checkConfigVars(t, c.binary, env)

	for k := range c.svc.Environment {
		if !slices.Contains(vars, k) {
			t.Errorf("%s is set, but %s does not read it (it reads %v)", k, c.binary, vars)
		}
	}
	// Every variable the binary reads can be set through compose, unless notPassed says why not.
	for _, v := range vars {
		_, set := c.svc.Environment[v]
		reason, excused := notPassed[c.binary][v]
		switch {
		case !set && !excused:
			t.Errorf("%s reads %s, but compose neither passes it to %s nor lists it in notPassed with a reason",
				c.binary, v, c.name)
		case set && excused:
			t.Errorf("notPassed[%q] lists %s (%s), but compose passes it to %s", c.binary, v, reason, c.name)
		}
	}
	for v := range notPassed[c.binary] {
		if !slices.Contains(vars, v) {
			t.Errorf("notPassed[%q] lists %s, which %s does not read", c.binary, v, c.binary)
		}
	}
	// Address defaults are loopback addresses: inside a container every one must be explicit.
	for _, v := range vars {
		if strings.HasSuffix(v, "_ADDR") {
			if _, set := c.svc.Environment[v]; !set {
				t.Errorf("%s reads %s but compose does not set it (its default is not reachable between containers)", c.binary, v)
			}
		}
	}
}

// checkConfigVars runs `<binary> -check-config` with exactly env and returns the variables it
// reads; it fails the test when the binary refuses env.
func checkConfigVars(t *testing.T, binary string, env []string) []string {
	t.Helper()
	vars, err := runCheckConfig(binary, env)
	if err != nil {
		t.Fatal(err)
	}
	return vars
}

// runCheckConfig runs `<binary> -check-config` with exactly env and returns the variables it
// reads, or an error that says why the binary refused env.
func runCheckConfig(binary string, env []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, binary), "-check-config")
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s -check-config failed (%v):\n%s\nenvironment: %s", binary, err, stderr.String(), redact(env))
	}
	vars, err := parseCheckConfig(stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%s -check-config: %v; stdout:\n%s", binary, err, stdout.String())
	}
	return vars, nil
}

// parseCheckConfig reads the one JSON line -check-config prints: {"vars":["DATABASE_URL",...]}.
func parseCheckConfig(out []byte) ([]string, error) {
	var last string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			last = line
		}
	}
	var report struct {
		Vars []string `json:"vars"`
	}
	if err := json.Unmarshal([]byte(last), &report); err != nil {
		return nil, fmt.Errorf("want a JSON line {\"vars\":[...]}: %w", err)
	}
	if len(report.Vars) == 0 {
		return nil, errors.New(`"vars" is empty`)
	}
	return report.Vars, nil
}

func redact(env []string) string {
	out := make([]string, len(env))
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		out[i] = k + "=…"
	}
	return strings.Join(out, " ")
}

// checkPorts: the container listens on all interfaces, and exposes or publishes exactly the
// ports of its listen addresses.
func checkPorts(t *testing.T, c *container) {
	want := map[string]string{} // port -> variable
	for _, v := range listenVars {
		value := c.svc.Environment[v]
		if value == nil {
			continue
		}
		host, port, err := net.SplitHostPort(*value)
		if err != nil {
			t.Errorf("%s=%q: %v", v, *value, err)
			continue
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("%s=%q: inside a container listen on 0.0.0.0, not %s", v, *value, host)
		}
		want[port] = v
	}
	got := map[string]bool{}
	for _, p := range c.svc.Expose {
		got[p] = true
	}
	for _, p := range c.svc.Ports {
		got[fmt.Sprint(p.Target)] = true
	}
	for port, v := range want {
		if !got[port] {
			t.Errorf("%s listens on port %s (%s), which is neither exposed nor published", c.name, port, v)
		}
	}
	for port := range got {
		if _, ok := want[port]; !ok {
			t.Errorf("%s exposes or publishes port %s, which no listen address (%v) uses", c.name, port, listenVars)
		}
	}
}

// checkPeers: TM_TOKEN_ADDR and friends name the compose service and its gRPC port.
func checkPeers(t *testing.T, containers map[string]*container) {
	for _, c := range containers {
		for _, peer := range grpcServices {
			v := "TM_" + strings.ToUpper(peer) + "_ADDR"
			value := c.svc.Environment[v]
			if value == nil {
				continue
			}
			target, ok := containers[peer]
			if !ok {
				t.Errorf("%s: %s=%s, but there is no compose service %q", c.name, v, *value, peer)
				continue
			}
			listen := target.svc.Environment["TM_GRPC_ADDR"]
			if listen == nil {
				t.Errorf("%s sets no TM_GRPC_ADDR", peer)
				continue
			}
			_, port, _ := net.SplitHostPort(*listen)
			if want := net.JoinHostPort(peer, port); *value != want {
				t.Errorf("%s: %s=%s, want %s (%s listens on %s)", c.name, v, *value, want, peer, *listen)
			}
		}
	}
}

// checkDependencies: PostgreSQL healthy → migrate completed → services started → gateway.
func checkDependencies(t *testing.T, project *types.Project, containers map[string]*container) {
	migrate := containerRunning(containers, "tmctl")
	if migrate == nil {
		t.Fatal("no compose service runs tmctl")
	}
	if migrate.svc.Restart != "no" {
		t.Errorf("%s: restart %q, want \"no\" (it runs once)", migrate.name, migrate.svc.Restart)
	}
	postgres := ""
	for name, svc := range project.Services {
		if svc.Build == nil && strings.HasPrefix(svc.Image, "postgres:") {
			postgres = name
		}
	}
	if postgres == "" {
		t.Error("no postgres service")
	} else {
		requireDependency(t, migrate.svc, postgres, types.ServiceConditionHealthy)
		if project.Services[postgres].HealthCheck == nil {
			t.Errorf("%s has no healthcheck, so service_healthy never holds", postgres)
		}
	}
	for _, s := range grpcServices {
		c := containerRunning(containers, s)
		if c == nil {
			continue // reported as an unused binary
		}
		requireDependency(t, c.svc, migrate.name, types.ServiceConditionCompletedSuccessfully)
	}
	if gateway := containerRunning(containers, "gateway"); gateway != nil {
		for _, s := range grpcServices {
			if c := containerRunning(containers, s); c != nil {
				requireDependency(t, gateway.svc, c.name, types.ServiceConditionStarted)
			}
		}
	}
}

func containerRunning(containers map[string]*container, binary string) *container {
	for _, c := range containers {
		if c.binary == binary {
			return c
		}
	}
	return nil
}

// requireDependency accepts the named condition or a stronger one.
func requireDependency(t *testing.T, svc types.ServiceConfig, on, condition string) {
	t.Helper()
	dep, ok := svc.DependsOn[on]
	if !ok {
		t.Errorf("%s does not depend on %s", svc.Name, on)
		return
	}
	ok = dep.Condition == condition ||
		condition == types.ServiceConditionStarted && dep.Condition == types.ServiceConditionHealthy
	if !ok {
		t.Errorf("%s depends on %s with condition %q, want %q", svc.Name, on, dep.Condition, condition)
	}
}

// dockerfileStages maps each named stage of the Dockerfile to its ENTRYPOINT (exec form).
func dockerfileStages(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string][]string{}
	current := ""
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			current = ""
			if n := len(fields); n >= 4 && strings.EqualFold(fields[n-2], "AS") {
				current = fields[n-1]
				stages[current] = nil
			}
		case "ENTRYPOINT":
			if current == "" {
				continue
			}
			var argv []string
			raw := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), fields[0]))
			if err := json.Unmarshal([]byte(raw), &argv); err != nil {
				t.Errorf("%s stage %q: ENTRYPOINT must be in exec form: %v", dockerfilePath, current, err)
			}
			stages[current] = argv
		}
	}
	return stages
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
