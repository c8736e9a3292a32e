// Package deploycheck keeps the deployment files honest against the binaries they run.
//
// No Docker engine runs where the tests do, so its tests load docker-compose.yml with
// compose-go (the library docker compose itself uses) and read deploy/docker/Dockerfile, then
// check every container: it builds a target that names a real binary, runs a command that
// binary accepts, and gets an environment that the binary's own -check-config accepts, with no
// variable the binary does not read (a typo would otherwise be silently ignored). Ports and the
// depends_on graph are checked against the listen addresses and the start-up order.
//
// The Kubernetes manifests in deploy/k8s (no cluster either: the kustomization's resources are
// decoded as YAML) are held to the same facts, plus what a cluster adds: Services that reach
// the right ports, probes, the containers' security settings and replica counts.
//
// The package has no non-test code.
package deploycheck
