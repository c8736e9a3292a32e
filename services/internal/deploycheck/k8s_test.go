package deploycheck

// The Kubernetes manifests in deploy/k8s run the same binaries as docker-compose.yml, so they
// are held to the same facts: which binary each image runs, which variables each binary reads
// and accepts (its own -check-config), where it listens and where the others dial it. No
// cluster runs where the tests do, so the manifests are read as kustomize would read them: the
// resources listed in kustomization.yaml, several documents per file.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const k8sDir = "deploy/k8s"

// secretExampleFile names the keys of the Secret that operators create by hand; it is not a
// resource of the kustomization.
const secretExampleFile = "secret.example.yaml"

// imagePrefix: a container's image is imagePrefix + its Dockerfile target, and kustomization.yaml
// rewrites each of those names to the operator's registry and tag.
const imagePrefix = "tokenmanager/"

// singletons lists the binaries that must not run more than once at a time, with the reason.
// They get one replica and the Recreate strategy; every other Deployment gets at least two.
// None today: every background loop of the services tolerates other replicas (deploy/k8s/
// README.md says why, service by service). An entry is a claim the manifests must honour.
var singletons = map[string]string{}

// secretPlaceholders are the values -check-config gets for the Secret's keys (the real ones
// never leave the cluster): valid values from the compose test's sets.
var secretPlaceholders = merge(requiredEnv, optionalEnv, map[string]string{
	"DATABASE_URL": readmeEnv["DATABASE_URL"],
})

// The parts of Kubernetes objects the checks read. Decoding ignores the fields not named here;
// a misspelt field that matters (readOnlyRootFileSystem) is therefore a missing one, which the
// checks report.
type (
	k8sObject struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name        string            `yaml:"name"`
			Namespace   string            `yaml:"namespace"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Data       map[string]string `yaml:"data"`       // ConfigMap
		StringData map[string]string `yaml:"stringData"` // Secret
		Spec       k8sSpec           `yaml:"spec"`
		file       string
	}
	k8sSpec struct {
		// Deployment, Job, PodDisruptionBudget: {matchLabels: ...}; Service: a plain map.
		Selector     yaml.Node `yaml:"selector"`
		Replicas     *int      `yaml:"replicas"`
		BackoffLimit *int      `yaml:"backoffLimit"`
		Strategy     struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Template struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		Type           string        `yaml:"type"`  // Service
		Ports          []servicePort `yaml:"ports"` // Service
		MinAvailable   *intOrString  `yaml:"minAvailable"`
		MaxUnavailable *intOrString  `yaml:"maxUnavailable"`
	}
	servicePort struct {
		Name       string      `yaml:"name"`
		Port       int         `yaml:"port"`
		TargetPort intOrString `yaml:"targetPort"`
	}
	podSpec struct {
		RestartPolicy                string         `yaml:"restartPolicy"`
		AutomountServiceAccountToken *bool          `yaml:"automountServiceAccountToken"`
		EnableServiceLinks           *bool          `yaml:"enableServiceLinks"`
		SecurityContext              *k8sSecContext `yaml:"securityContext"`
		InitContainers               []k8sContainer `yaml:"initContainers"`
		Containers                   []k8sContainer `yaml:"containers"`
	}
	k8sContainer struct {
		Name    string         `yaml:"name"`
		Image   string         `yaml:"image"`
		Command []string       `yaml:"command"`
		Args    []string       `yaml:"args"`
		Env     []envVar       `yaml:"env"`
		EnvFrom []any          `yaml:"envFrom"`
		Ports   []ctrPort      `yaml:"ports"`
		Ready   *k8sProbe      `yaml:"readinessProbe"`
		Live    *k8sProbe      `yaml:"livenessProbe"`
		Startup *k8sProbe      `yaml:"startupProbe"`
		Res     k8sResReqs     `yaml:"resources"`
		SecCtx  *k8sSecContext `yaml:"securityContext"`
	}
	ctrPort struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	}
	envVar struct {
		Name      string  `yaml:"name"`
		Value     *string `yaml:"value"`
		ValueFrom *struct {
			ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
			SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	}
	keyRef struct {
		Name     string `yaml:"name"`
		Key      string `yaml:"key"`
		Optional bool   `yaml:"optional"`
	}
	k8sProbe struct {
		GRPC *struct {
			Port    int     `yaml:"port"`
			Service *string `yaml:"service"`
		} `yaml:"grpc"`
		HTTPGet *struct {
			Path string      `yaml:"path"`
			Port intOrString `yaml:"port"`
		} `yaml:"httpGet"`
		TCPSocket *struct {
			Port intOrString `yaml:"port"`
		} `yaml:"tcpSocket"`
		Exec any `yaml:"exec"`
	}
	k8sResReqs struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	}
	k8sSecContext struct {
		RunAsUser                *int64 `yaml:"runAsUser"`
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		Privileged               *bool  `yaml:"privileged"`
		Capabilities             *struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	}
	kustomization struct {
		Namespace string   `yaml:"namespace"`
		Resources []string `yaml:"resources"`
		Images    []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
			Digest  string `yaml:"digest"`
		} `yaml:"images"`
	}
)

// intOrString is a port given by number or by name.
type intOrString struct{ s string }

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a name", n.Line)
	}
	v.s = n.Value
	return nil
}

func (v intOrString) String() string { return v.s }

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

// k8sManifests is what kubectl apply -k deploy/k8s would apply, plus the example Secret.
type k8sManifests struct {
	kust    kustomization
	objects []*k8sObject
	secret  *k8sObject // from secretExampleFile
}

func (m *k8sManifests) byKind(kind string) []*k8sObject {
	var out []*k8sObject
	for _, o := range m.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func loadK8s(dir string) (*k8sManifests, error) {
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	m := &k8sManifests{}
	if err := yaml.Unmarshal(data, &m.kust); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	for _, r := range m.kust.Resources {
		objs, err := readK8sFile(filepath.Join(dir, r))
		if err != nil {
			return nil, err
		}
		m.objects = append(m.objects, objs...)
	}
	secrets, err := readK8sFile(filepath.Join(dir, secretExampleFile))
	if err != nil {
		return nil, err
	}
	if len(secrets) != 1 || secrets[0].Kind != "Secret" {
		return nil, fmt.Errorf("%s: want exactly one Secret", secretExampleFile)
	}
	m.secret = secrets[0]
	return m, nil
}

// readK8sFile decodes every document of a multi-document YAML file.
func readK8sFile(path string) ([]*k8sObject, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var objs []*k8sObject
	dec := yaml.NewDecoder(f)
	for {
		o := &k8sObject{file: filepath.Base(path)}
		err := dec.Decode(o)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if o.Kind == "" && o.Metadata.Name == "" {
			continue // an empty document
		}
		objs = append(objs, o)
	}
}

// problems collects what is wrong, so that one run reports everything and TestK8sCatches can
// look at what a broken manifest produced.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func TestK8s(t *testing.T) {
	dir := filepath.Join(repoRoot, k8sDir)
	m, err := loadK8s(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkK8s(t, m) {
		t.Error(p)
	}
	// Every manifest in the folder is applied, but the example Secret.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if filepath.Ext(name) != ".yaml" || name == "kustomization.yaml" {
			continue
		}
		listed := slices.Contains(m.kust.Resources, name)
		switch {
		case name == secretExampleFile && listed:
			t.Errorf("kustomization.yaml lists %s: the Secret holds real keys and is created by hand", name)
		case name != secretExampleFile && !listed:
			t.Errorf("%s/%s is not in kustomization.yaml's resources, so kubectl apply -k never applies it", k8sDir, name)
		}
	}
}

// TestK8sCatches breaks the manifests in ways that would break a deployment and requires the
// checks to notice, so that TestK8s cannot pass by checking nothing.
func TestK8sCatches(t *testing.T) {
	dir := filepath.Join(repoRoot, k8sDir)
	for _, tc := range []struct {
		name   string
		want   string // in some problem
		mutate func(*k8sManifests)
	}{
		{"unread variable", "does not read it", func(m *k8sManifests) {
			c := workloadOf(m, "usage").container()
			v := "0"
			c.Env = append(c.Env, envVar{Name: "USAGE_RETENTION", Value: &v})
		}},
		{"wrong peer port", "TM_TOKEN_ADDR=token:9102", func(m *k8sManifests) {
			m.byKind("ConfigMap")[0].Data["TM_TOKEN_ADDR"] = "token:9102"
		}},
		{"unknown image", "Dockerfile target", func(m *k8sManifests) {
			workloadOf(m, "team").container().Image = imagePrefix + "teams"
		}},
		{"capabilities kept", "drop ALL", func(m *k8sManifests) {
			workloadOf(m, "gateway").container().SecCtx.Capabilities = nil
		}},
		{"writable root", "readOnlyRootFilesystem", func(m *k8sManifests) {
			f := false
			workloadOf(m, "tmctl").container().SecCtx.ReadOnlyRootFilesystem = &f
		}},
		{"probe on metrics port", "readinessProbe: want grpc on the gRPC port", func(m *k8sManifests) {
			workloadOf(m, "audit").container().Ready.GRPC.Port = 9203
		}},
		{"migrate does not migrate", `want ["migrate"]`, func(m *k8sManifests) {
			workloadOf(m, "tmctl").container().Args = nil
		}},
		{"required secret optional", "TOKEN_ENCRYPTION_KEY: required", func(m *k8sManifests) {
			c := workloadOf(m, "token").container()
			for i := range c.Env {
				if c.Env[i].Name == "TOKEN_ENCRYPTION_KEY" {
					c.Env[i].ValueFrom.SecretKeyRef.Optional = true
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := loadK8s(dir)
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(m)
			got := checkK8s(t, m)
			for _, p := range got {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("no problem mentions %q; got %d:\n%s", tc.want, len(got), strings.Join(got, "\n"))
		})
	}
}

// workload is a Deployment or Job running one of the binaries.
type workload struct {
	obj    *k8sObject
	binary string
}

func (w *workload) container() *k8sContainer { return &w.obj.Spec.Template.Spec.Containers[0] }
func (w *workload) name() string             { return w.obj.Kind + "/" + w.obj.Metadata.Name }

// workloadOf finds the workload of binary, for TestK8sCatches; the manifests have been checked.
func workloadOf(m *k8sManifests, binary string) *workload {
	for _, w := range workloads(m, nil) {
		if w.binary == binary {
			return w
		}
	}
	panic("no workload runs " + binary)
}

// workloads returns the Deployments and Jobs whose single container runs a binary; p (if not
// nil) receives what keeps a workload from being one.
func workloads(m *k8sManifests, p *problems) []*workload {
	if p == nil {
		p = &problems{}
	}
	var out []*workload
	for _, o := range m.objects {
		if o.Kind != "Deployment" && o.Kind != "Job" {
			continue
		}
		name := o.Kind + "/" + o.Metadata.Name
		spec := o.Spec.Template.Spec
		if len(spec.InitContainers) > 0 {
			p.add("%s: init containers are not expected (each pod runs one binary)", name)
		}
		if len(spec.Containers) != 1 {
			p.add("%s: %d containers, want exactly one (each pod runs one binary)", name, len(spec.Containers))
			continue
		}
		target, ok := strings.CutPrefix(spec.Containers[0].Image, imagePrefix)
		if _, known := binaries[target]; !ok || !known {
			p.add("%s: image %q, want %s<Dockerfile target> with a target of %v (kustomization.yaml's images: sets registry and tag)",
				name, spec.Containers[0].Image, imagePrefix, sortedKeys(binaries))
			continue
		}
		out = append(out, &workload{obj: o, binary: target})
	}
	return out
}

// checkK8s runs every check on m and returns the problems found.
func checkK8s(t *testing.T, m *k8sManifests) problems {
	t.Helper()
	var p problems
	stages := dockerfileStages(t)

	checkKinds(&p, m)
	ws := workloads(m, &p)
	checkImages(&p, m, ws, stages)
	byBinary := map[string]*workload{}
	for _, w := range ws {
		if prev, dup := byBinary[w.binary]; dup {
			p.add("%s and %s both run %s: want exactly one workload per binary", prev.name(), w.name(), w.binary)
		}
		byBinary[w.binary] = w
	}
	for _, b := range sortedKeys(binaries) {
		if byBinary[b] == nil {
			p.add("no Deployment or Job runs %s", b)
		}
	}
	secretVars := readmeSecretVars(t)
	listen := map[*workload]map[string]string{} // the listen addresses each workload resolves to
	for _, w := range ws {
		checkWorkloadShape(&p, w)
		checkSecurity(&p, w)
		listen[w] = checkK8sEnvironment(&p, m, w, secretVars)
		checkContainerPorts(&p, w, listen[w])
		checkProbes(&p, w, listen[w])
		checkScrape(&p, w, listen[w])
	}
	checkServices(&p, m, ws, listen)
	checkK8sPeers(&p, m, ws, listen)
	checkPDB(&p, m, byBinary["gateway"])
	checkSecretExample(&p, m, ws)
	slices.Sort(p)
	return slices.Compact(p)
}

var allowedKinds = []string{"Namespace", "ConfigMap", "Deployment", "Service", "Job", "PodDisruptionBudget"}

// checkKinds: only kinds these checks understand, all in the one namespace.
func checkKinds(p *problems, m *k8sManifests) {
	ns := m.kust.Namespace
	if ns == "" {
		p.add("kustomization.yaml sets no namespace")
	}
	namespaces := m.byKind("Namespace")
	if len(namespaces) != 1 || namespaces[0].Metadata.Name != ns {
		p.add("want one Namespace object named %q (kustomization.yaml's namespace), got %d", ns, len(namespaces))
	}
	if len(m.byKind("ConfigMap")) != 1 {
		p.add("want exactly one ConfigMap (the non-secret configuration), got %d", len(m.byKind("ConfigMap")))
	}
	for _, o := range m.objects {
		if !slices.Contains(allowedKinds, o.Kind) {
			p.add("%s: kind %q is none of %v that deploycheck understands", o.file, o.Kind, allowedKinds)
		}
		if o.Metadata.Namespace != "" && o.Metadata.Namespace != ns {
			p.add("%s/%s: namespace %q, but kustomization.yaml puts everything in %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace, ns)
		}
		if o.Kind == "Secret" {
			p.add("%s: a Secret in the applied manifests; it holds real keys and is created by hand", o.file)
		}
	}
}

// checkImages: each image is a Dockerfile target running the binary of that name, and
// kustomization.yaml's images: rewrites every one of them (and nothing else) to a registry and
// tag, all in one place.
func checkImages(p *problems, m *k8sManifests, ws []*workload, stages map[string][]string) {
	used := map[string]bool{}
	for _, w := range ws {
		used[w.container().Image] = true
		entrypoint, ok := stages[w.binary]
		if !ok {
			p.add("%s: %s has no stage named %q", w.name(), dockerfilePath, w.binary)
		} else if want := []string{"/usr/local/bin/" + w.binary}; !slices.Equal(entrypoint, want) {
			p.add("%s: %s stage %q: ENTRYPOINT %q, want %q", w.name(), dockerfilePath, w.binary, entrypoint, want)
		}
	}
	set := map[string]bool{}
	for _, img := range m.kust.Images {
		set[img.Name] = true
		if !used[img.Name] {
			p.add("kustomization.yaml images: %q is no container's image", img.Name)
		}
		target := strings.TrimPrefix(img.Name, imagePrefix)
		if img.NewName != "" && filepath.Base(img.NewName) != target {
			p.add("kustomization.yaml images: %q becomes %q; keep the target's name last, so no image runs another's binary", img.Name, img.NewName)
		}
		if img.NewTag == "" && img.Digest == "" {
			p.add("kustomization.yaml images: %q sets neither newTag nor digest", img.Name)
		}
	}
	for img := range used {
		if !set[img] {
			p.add("image %q has no entry in kustomization.yaml's images:, so its registry and tag are set elsewhere", img)
		}
	}
}

// checkWorkloadShape: tmctl migrates in a Job, the rest are Deployments with their replicas
// decided, and the container runs the image's binary with a command it accepts.
func checkWorkloadShape(p *problems, w *workload) {
	c := w.container()
	spec := w.obj.Spec
	if len(c.Command) > 0 {
		p.add("%s: command %q overrides the image's binary", w.name(), c.Command)
	}
	if len(c.Args) > 0 && !slices.ContainsFunc(commands[w.binary], func(a []string) bool { return slices.Equal(a, c.Args) }) {
		p.add("%s: args %q: %s accepts only %q", w.name(), c.Args, w.binary, commands[w.binary])
	}
	if w.binary == "tmctl" {
		if w.obj.Kind != "Job" {
			p.add("%s runs tmctl: want a Job (tmctl migrate runs once, then exits)", w.name())
		}
		if !slices.Equal(c.Args, []string{"migrate"}) {
			p.add("%s: args %q, want [\"migrate\"]: the services refuse to start on an unmigrated schema", w.name(), c.Args)
		}
		if rp := spec.Template.Spec.RestartPolicy; rp != "Never" && rp != "OnFailure" {
			p.add("%s: restartPolicy %q, want Never or OnFailure", w.name(), rp)
		}
		if spec.BackoffLimit == nil {
			p.add("%s: set backoffLimit (the migration is retried while PostgreSQL is not reachable yet)", w.name())
		}
		return
	}
	if w.obj.Kind != "Deployment" {
		p.add("%s runs %s: want a Deployment", w.name(), w.binary)
		return
	}
	sel, err := matchLabels(&spec.Selector)
	switch {
	case err != nil:
		p.add("%s: selector: %v", w.name(), err)
	case len(sel) == 0 || !selects(sel, spec.Template.Metadata.Labels):
		p.add("%s: selector %v does not select its own pod labels %v", w.name(), sel, spec.Template.Metadata.Labels)
	}
	replicas := spec.Replicas
	reason, single := singletons[w.binary]
	switch {
	case replicas == nil:
		p.add("%s: replicas not set; decide whether %s may run more than once", w.name(), w.binary)
	case single && (*replicas != 1 || spec.Strategy.Type != "Recreate"):
		p.add("%s: %s must not run twice (%s): want replicas 1 and strategy Recreate", w.name(), w.binary, reason)
	case !single && *replicas < 2:
		p.add("%s: replicas %d; %s is stateless, run at least 2 (or list it in singletons with the reason)", w.name(), *replicas, w.binary)
	}
}

// checkSecurity: non-root, read-only, no privilege escalation, no capabilities, the runtime's
// seccomp profile, bounded resources, and nothing from the Kubernetes API in the pod.
func checkSecurity(p *problems, w *workload) {
	pod := w.obj.Spec.Template.Spec
	c := w.container()
	name := w.name()
	if !isFalse(pod.AutomountServiceAccountToken) {
		p.add("%s: set automountServiceAccountToken: false (no binary talks to the Kubernetes API)", name)
	}
	if !isFalse(pod.EnableServiceLinks) {
		p.add("%s: set enableServiceLinks: false (service links put <SERVICE>_PORT=... variables, e.g. USAGE_PORT, into the environment the binary reads)", name)
	}
	sc := c.SecCtx
	if sc == nil {
		p.add("%s: container %s has no securityContext", name, c.Name)
		return
	}
	if !isTrue(sc.RunAsNonRoot) {
		p.add("%s: securityContext: set runAsNonRoot: true", name)
	}
	// The images' USER is nonroot, a name: the kubelet cannot prove a name is not root and
	// refuses runAsNonRoot without a numeric runAsUser.
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		p.add("%s: securityContext: set a numeric non-zero runAsUser (the image's USER is a name)", name)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		p.add("%s: securityContext: set readOnlyRootFilesystem: true", name)
	}
	if !isFalse(sc.AllowPrivilegeEscalation) {
		p.add("%s: securityContext: set allowPrivilegeEscalation: false", name)
	}
	if isTrue(sc.Privileged) {
		p.add("%s: securityContext: privileged", name)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		p.add("%s: securityContext: capabilities must drop ALL and add none", name)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && pod.SecurityContext != nil {
		seccomp = pod.SecurityContext.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != "RuntimeDefault" {
		p.add("%s: seccompProfile: want RuntimeDefault (container or pod securityContext)", name)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Res.Requests[r] == "" || c.Res.Limits[r] == "" {
			p.add("%s: resources: set requests and limits of %s", name, r)
		}
	}
}

// resolvedEnv is a container's environment as the kubelet would build it.
type resolvedEnv struct {
	env      map[string]string
	required []string // variables from non-optional Secret keys
}

func (r resolvedEnv) list(without string) []string {
	var out []string
	for _, k := range sortedKeys(r.env) {
		if k != without {
			out = append(out, k+"="+r.env[k])
		}
	}
	return out
}

// resolveEnv builds w's environment. allSet: as an operator who sets everything would have it —
// every optional Secret key present, every empty ConfigMap value filled with a valid non-default
// one (optionalEnv); otherwise as shipped, with only the required Secret keys present.
func resolveEnv(p *problems, m *k8sManifests, w *workload, secretVars map[string]bool, allSet bool) resolvedEnv {
	c := w.container()
	r := resolvedEnv{env: map[string]string{}}
	if len(c.EnvFrom) > 0 {
		p.add("%s: envFrom hands over every key; list the variables %s reads one by one", w.name(), w.binary)
	}
	configMaps := map[string]*k8sObject{}
	for _, o := range m.byKind("ConfigMap") {
		configMaps[o.Metadata.Name] = o
	}
	for _, e := range c.Env {
		if _, dup := r.env[e.Name]; dup {
			p.add("%s: %s is set twice", w.name(), e.Name)
		}
		var cmRef, secRef *keyRef
		if e.ValueFrom != nil {
			cmRef, secRef = e.ValueFrom.ConfigMapKeyRef, e.ValueFrom.SecretKeyRef
		}
		if secretVars[e.Name] && secRef == nil {
			p.add("%s: %s is a secret (README.md's configuration table); take it from the Secret with secretKeyRef", w.name(), e.Name)
		}
		switch {
		case e.Value != nil:
			r.env[e.Name] = *e.Value
		case cmRef != nil:
			if cmRef.Key != e.Name {
				p.add("%s: %s comes from ConfigMap key %s; keep the variable's name as the key", w.name(), e.Name, cmRef.Key)
			}
			cm := configMaps[cmRef.Name]
			if cm == nil {
				p.add("%s: %s: no ConfigMap %q", w.name(), e.Name, cmRef.Name)
				continue
			}
			v, ok := cm.Data[cmRef.Key]
			if !ok {
				if !cmRef.Optional {
					p.add("%s: %s: ConfigMap %s has no key %s (the pod would not start)", w.name(), e.Name, cmRef.Name, cmRef.Key)
				}
				continue
			}
			if v == "" && allSet {
				fill, ok := optionalEnv[e.Name]
				if !ok {
					p.add("%s: %s is empty in the ConfigMap and optionalEnv has no value for it, so -check-config never validates one", w.name(), e.Name)
				}
				v = fill
			}
			r.env[e.Name] = v
		case secRef != nil:
			if !secretVars[e.Name] {
				p.add("%s: %s comes from the Secret but is no secret (README.md's configuration table); put it in the ConfigMap", w.name(), e.Name)
			}
			if secRef.Key != e.Name {
				p.add("%s: %s comes from Secret key %s; keep the variable's name as the key", w.name(), e.Name, secRef.Key)
			}
			if secRef.Name != m.secret.Metadata.Name {
				p.add("%s: %s: Secret %q, but %s describes %q", w.name(), e.Name, secRef.Name, secretExampleFile, m.secret.Metadata.Name)
			}
			if _, ok := m.secret.StringData[secRef.Key]; !ok {
				p.add("%s: %s: %s does not name key %s, so operators do not know to create it", w.name(), e.Name, secretExampleFile, secRef.Key)
			}
			if !secRef.Optional {
				r.required = append(r.required, e.Name)
			} else if !allSet {
				continue // an optional key the operator did not create: the variable is not set
			}
			v, ok := secretPlaceholders[secRef.Key]
			if !ok {
				p.add("%s: %s: secretPlaceholders has no value for Secret key %s", w.name(), e.Name, secRef.Key)
			}
			r.env[e.Name] = v
		default:
			p.add("%s: %s has neither value nor a ConfigMap or Secret key", w.name(), e.Name)
		}
	}
	return r
}

// checkK8sEnvironment runs the binary's -check-config on the container's environment, as
// shipped and with everything set, and compares what is set with what the binary reads, as the
// compose test does. It returns the listen addresses as shipped.
func checkK8sEnvironment(p *problems, m *k8sManifests, w *workload, secretVars map[string]bool) map[string]string {
	shipped := resolveEnv(p, m, w, secretVars, false)
	full := resolveEnv(p, m, w, secretVars, true) // repeats shipped's problems; checkK8s drops duplicates
	// The listen and peer addresses as shipped, for the port checks (also when the binary
	// refuses the environment: the problem is reported once, here).
	addrs := map[string]string{}
	for _, v := range listenVars {
		if a, ok := shipped.env[v]; ok {
			addrs[v] = a
		}
	}
	for _, s := range grpcServices {
		v := "TM_" + strings.ToUpper(s) + "_ADDR"
		if a, ok := shipped.env[v]; ok {
			addrs[v] = a
		}
	}
	var vars []string
	for _, r := range []struct {
		what string
		env  resolvedEnv
	}{{"as shipped (optional Secret keys absent)", shipped}, {"with every setting and Secret key set", full}} {
		got, err := runCheckConfig(w.binary, r.env.list(""))
		if err != nil {
			p.add("%s %s: %v", w.name(), r.what, err)
			continue
		}
		vars = got
	}
	// A Secret key the pod cannot start without must be one the binary cannot start without;
	// the others are optional: true, so an operator need not create them.
	for _, v := range shipped.required {
		if _, err := runCheckConfig(w.binary, shipped.list(v)); err == nil {
			p.add("%s: %s starts without %s; make its secretKeyRef optional: true", w.name(), w.binary, v)
		}
	}
	if vars == nil {
		return addrs
	}
	set := map[string]bool{}
	for _, e := range w.container().Env {
		set[e.Name] = true
		if !slices.Contains(vars, e.Name) {
			p.add("%s: %s is set, but %s does not read it (it reads %v)", w.name(), e.Name, w.binary, vars)
		}
	}
	for _, v := range vars {
		reason, excused := notPassed[w.binary][v]
		switch {
		case !set[v] && !excused:
			p.add("%s: %s reads %s, but the manifest neither sets it (a literal, a ConfigMap or Secret key) nor does notPassed say why not", w.name(), w.binary, v)
		case set[v] && excused:
			p.add("%s: notPassed[%q] lists %s (%s), but the manifest sets it", w.name(), w.binary, v, reason)
		}
		// Address defaults are loopback addresses: in a pod every one must be explicit.
		if strings.HasSuffix(v, "_ADDR") && shipped.env[v] == "" {
			p.add("%s: %s reads %s, but the manifest leaves it empty (its default is not reachable from other pods)", w.name(), w.binary, v)
		}
	}
	return addrs
}

// checkContainerPorts: the pod listens on all interfaces, and declares exactly the ports of its
// listen addresses.
func checkContainerPorts(p *problems, w *workload, addrs map[string]string) {
	want := map[int]string{}
	for _, v := range listenVars {
		a, ok := addrs[v]
		if !ok {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			p.add("%s: %s=%q: %v", w.name(), v, a, err)
			continue
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			p.add("%s: %s=%q: in a pod listen on 0.0.0.0, not %s", w.name(), v, a, host)
		}
		n, _ := strconv.Atoi(port)
		want[n] = v
	}
	got := map[int]bool{}
	names := map[string]bool{}
	for _, cp := range w.container().Ports {
		got[cp.ContainerPort] = true
		if cp.Name != "" && names[cp.Name] {
			p.add("%s: port name %q used twice", w.name(), cp.Name)
		}
		names[cp.Name] = true
		if _, ok := want[cp.ContainerPort]; !ok {
			p.add("%s: containerPort %d is none of its listen addresses' ports (%v)", w.name(), cp.ContainerPort, listenVars)
		}
	}
	for port, v := range want {
		if !got[port] {
			p.add("%s: listens on %d (%s), which is not a containerPort", w.name(), port, v)
		}
	}
}

// containerPort resolves a port given by number or name to a containerPort of c (0: none).
func containerPort(c *k8sContainer, ref string) int {
	for _, cp := range c.Ports {
		if cp.Name == ref || strconv.Itoa(cp.ContainerPort) == ref {
			return cp.ContainerPort
		}
	}
	return 0
}

func listenPort(addrs map[string]string, v string) int {
	_, port, err := net.SplitHostPort(addrs[v])
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

// checkProbes: the services are probed with grpc.health.v1 on their gRPC port, the gateway with
// GET /health on its HTTP port; every probe points at a port the binary listens on.
func checkProbes(p *problems, w *workload, addrs map[string]string) {
	if w.binary == "tmctl" {
		return
	}
	c := w.container()
	for _, pr := range []struct {
		kind  string
		probe *k8sProbe
	}{{"readinessProbe", c.Ready}, {"livenessProbe", c.Live}, {"startupProbe", c.Startup}} {
		if pr.probe == nil {
			if pr.kind != "startupProbe" {
				p.add("%s: no %s", w.name(), pr.kind)
			}
			continue
		}
		var port int
		switch pb := pr.probe; {
		case pb.GRPC != nil:
			port = containerPort(c, strconv.Itoa(pb.GRPC.Port))
			if pb.GRPC.Service != nil && *pb.GRPC.Service != "" {
				p.add("%s: %s asks for grpc service %q; the servers report the whole server (\"\")", w.name(), pr.kind, *pb.GRPC.Service)
			}
		case pb.HTTPGet != nil:
			port = containerPort(c, pb.HTTPGet.Port.String())
		case pb.TCPSocket != nil:
			port = containerPort(c, pb.TCPSocket.Port.String())
		default:
			p.add("%s: %s is neither grpc, httpGet nor tcpSocket (the images have no shell for exec)", w.name(), pr.kind)
			continue
		}
		if port == 0 {
			p.add("%s: %s points at no containerPort", w.name(), pr.kind)
			continue
		}
		if w.binary == "gateway" {
			if port != listenPort(addrs, "TM_HTTP_ADDR") {
				p.add("%s: %s on port %d, not the HTTP port (TM_HTTP_ADDR=%s)", w.name(), pr.kind, port, addrs["TM_HTTP_ADDR"])
			}
			if pr.kind == "readinessProbe" && (pr.probe.HTTPGet == nil || pr.probe.HTTPGet.Path != "/health") {
				p.add("%s: readinessProbe: want httpGet /health", w.name())
			}
			continue
		}
		if pr.probe.GRPC == nil || port != listenPort(addrs, "TM_GRPC_ADDR") {
			p.add("%s: %s: want grpc on the gRPC port (TM_GRPC_ADDR=%s), where grpc.health.v1 is served", w.name(), pr.kind, addrs["TM_GRPC_ADDR"])
		}
	}
}

// checkScrape: Prometheus finds the metrics port through the pod's annotations.
func checkScrape(p *problems, w *workload, addrs map[string]string) {
	if w.obj.Kind != "Deployment" {
		return
	}
	a := w.obj.Spec.Template.Metadata.Annotations
	want := map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   strconv.Itoa(listenPort(addrs, "TM_METRICS_ADDR")),
		"prometheus.io/path":   "/metrics",
	}
	for _, k := range sortedKeys(want) {
		if a[k] != want[k] {
			p.add("%s: pod annotation %s=%q, want %q (TM_METRICS_ADDR=%s)", w.name(), k, a[k], want[k], addrs["TM_METRICS_ADDR"])
		}
	}
}

// matchLabels reads a {matchLabels: {...}} selector.
func matchLabels(n *yaml.Node) (map[string]string, error) {
	var s struct {
		MatchLabels      map[string]string `yaml:"matchLabels"`
		MatchExpressions []any             `yaml:"matchExpressions"`
	}
	if err := n.Decode(&s); err != nil {
		return nil, err
	}
	if len(s.MatchExpressions) > 0 {
		return nil, errors.New("matchExpressions are not understood here; use matchLabels")
	}
	return s.MatchLabels, nil
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// serviceTargets maps each port of Service s to the container port it reaches in w (0: none).
func serviceTargets(s *k8sObject, w *workload) map[int]int {
	out := map[int]int{}
	for _, sp := range s.Spec.Ports {
		ref := sp.TargetPort.String()
		if ref == "" {
			ref = strconv.Itoa(sp.Port)
		}
		out[sp.Port] = containerPort(w.container(), ref)
	}
	return out
}

// selectedBy returns the workloads whose pods Service s selects.
func selectedBy(s *k8sObject, ws []*workload) ([]*workload, error) {
	var sel map[string]string
	if err := s.Spec.Selector.Decode(&sel); err != nil {
		return nil, err
	}
	var out []*workload
	for _, w := range ws {
		if selects(sel, w.obj.Spec.Template.Metadata.Labels) {
			out = append(out, w)
		}
	}
	return out, nil
}

// checkServices: every Deployment has one ClusterIP Service that exposes exactly its listen
// ports, each reaching the right containerPort.
func checkServices(p *problems, m *k8sManifests, ws []*workload, listen map[*workload]map[string]string) {
	served := map[*workload][]*k8sObject{}
	for _, s := range m.byKind("Service") {
		name := "Service/" + s.Metadata.Name
		if s.Spec.Type != "" && s.Spec.Type != "ClusterIP" {
			p.add("%s: type %s; expose the gateway with an Ingress or load balancer of your own, keep these ClusterIP", name, s.Spec.Type)
		}
		sel, err := selectedBy(s, ws)
		if err != nil {
			p.add("%s: selector: %v", name, err)
			continue
		}
		if len(sel) != 1 {
			p.add("%s selects %d workloads, want exactly one", name, len(sel))
			continue
		}
		w := sel[0]
		served[w] = append(served[w], s)
		want := map[int]bool{}
		for _, v := range listenVars {
			if n := listenPort(listen[w], v); n != 0 {
				want[n] = true
			}
		}
		got := map[int]bool{}
		for port, target := range serviceTargets(s, w) {
			if target == 0 {
				p.add("%s: port %d reaches no containerPort of %s", name, port, w.name())
				continue
			}
			got[target] = true
		}
		for n := range want {
			if !got[n] {
				p.add("%s does not expose %s's port %d", name, w.name(), n)
			}
		}
	}
	for _, w := range ws {
		if w.obj.Kind == "Deployment" && len(served[w]) != 1 {
			p.add("%s: %d Services select it, want exactly one", w.name(), len(served[w]))
		}
	}
}

// checkK8sPeers: TM_TOKEN_ADDR and friends name a Service that exists, on a port it exposes,
// which reaches the gRPC port of the workload running that service's binary.
func checkK8sPeers(p *problems, m *k8sManifests, ws []*workload, listen map[*workload]map[string]string) {
	services := map[string]*k8sObject{}
	for _, s := range m.byKind("Service") {
		services[s.Metadata.Name] = s
	}
	for _, w := range ws {
		for _, peer := range grpcServices {
			v := "TM_" + strings.ToUpper(peer) + "_ADDR"
			addr, ok := listen[w][v]
			if !ok {
				continue
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				p.add("%s: %s=%q: %v", w.name(), v, addr, err)
				continue
			}
			// token, token.<namespace>, token.<namespace>.svc, token.<namespace>.svc.cluster.local
			svcName, rest, _ := strings.Cut(host, ".")
			if rest != "" && rest != m.kust.Namespace && !strings.HasPrefix(rest, m.kust.Namespace+".svc") {
				p.add("%s: %s=%s names a host outside namespace %s", w.name(), v, addr, m.kust.Namespace)
				continue
			}
			s := services[svcName]
			if s == nil {
				p.add("%s: %s=%s, but there is no Service %q", w.name(), v, addr, svcName)
				continue
			}
			sel, _ := selectedBy(s, ws)
			if len(sel) != 1 || sel[0].binary != peer {
				p.add("%s: %s=%s: Service %s does not select the pods of %s", w.name(), v, addr, svcName, peer)
				continue
			}
			n, _ := strconv.Atoi(port)
			target, exposed := serviceTargets(s, sel[0])[n]
			grpcPort := listenPort(listen[sel[0]], "TM_GRPC_ADDR")
			switch {
			case !exposed:
				p.add("%s: %s=%s, but Service %s has no port %s", w.name(), v, addr, svcName, port)
			case target != grpcPort:
				p.add("%s: %s=%s reaches port %d of %s, which serves gRPC on %d", w.name(), v, addr, target, peer, grpcPort)
			}
		}
	}
}

// checkPDB: a drain never takes every gateway pod at once.
func checkPDB(p *problems, m *k8sManifests, gateway *workload) {
	if gateway == nil {
		return
	}
	var found bool
	for _, pdb := range m.byKind("PodDisruptionBudget") {
		sel, err := matchLabels(&pdb.Spec.Selector)
		if err != nil || !selects(sel, gateway.obj.Spec.Template.Metadata.Labels) {
			continue
		}
		found = true
		replicas := 1
		if r := gateway.obj.Spec.Replicas; r != nil {
			replicas = *r
		}
		switch {
		case pdb.Spec.MaxUnavailable != nil:
			if n, err := strconv.Atoi(pdb.Spec.MaxUnavailable.String()); err == nil && (n < 1 || n >= replicas) {
				p.add("PodDisruptionBudget/%s: maxUnavailable %d with %d gateway replicas", pdb.Metadata.Name, n, replicas)
			}
		case pdb.Spec.MinAvailable != nil:
			if n, err := strconv.Atoi(pdb.Spec.MinAvailable.String()); err == nil && (n < 1 || n >= replicas) {
				p.add("PodDisruptionBudget/%s: minAvailable %d with %d gateway replicas blocks drains or protects nothing", pdb.Metadata.Name, n, replicas)
			}
		default:
			p.add("PodDisruptionBudget/%s sets neither maxUnavailable nor minAvailable", pdb.Metadata.Name)
		}
	}
	if !found {
		p.add("no PodDisruptionBudget selects the gateway's pods")
	}
}

// checkSecretExample: secret.example.yaml names exactly the Secret keys the manifests use, and
// carries no value.
func checkSecretExample(p *problems, m *k8sManifests, ws []*workload) {
	used := map[string]bool{}
	for _, w := range ws {
		for _, e := range w.container().Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				used[e.ValueFrom.SecretKeyRef.Key] = true
			}
		}
	}
	for _, k := range sortedKeys(m.secret.StringData) {
		if !used[k] {
			p.add("%s names key %s, which no container reads", secretExampleFile, k)
		}
		if m.secret.StringData[k] != "" {
			p.add("%s: key %s has a value; the example must not carry secrets", secretExampleFile, k)
		}
	}
	if len(m.secret.Data) > 0 {
		p.add("%s: use stringData with empty values, not data", secretExampleFile)
	}
}

// readmeSecretVars returns the variables README.md's configuration table marks secret: the
// Secret column says "yes", or names the secret ones of a row that lists several.
func readmeSecretVars(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for v, cells := range readmeConfigRows(t) {
		if len(cells) < 5 {
			t.Fatalf("README.md configuration table: the row of %s has no Secret column", v)
		}
		secret := cells[4]
		if named := varName.FindAllStringSubmatch(secret, -1); len(named) > 0 {
			for _, n := range named {
				if n[1] == v {
					out[v] = true
				}
			}
			continue
		}
		out[v] = strings.HasPrefix(secret, "yes")
	}
	return out
}
