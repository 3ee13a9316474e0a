package integration

import (
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// TestDeployManifests checks deploy/ for what the install promises:
// hostNetwork, NET_ADMIN only, not privileged, every taint tolerated, and a
// ClusterRole that only reads the watched kinds and updates admin-kind
// status. (The integration tests create the same files in a real API
// server, which validates them.)
func TestDeployManifests(t *testing.T) {
	docs := func(path string) [][]byte {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]byte
		for _, d := range strings.Split(string(data), "\n---\n") {
			out = append(out, []byte(d))
		}
		return out
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(docs("../../deploy/20-daemonset.yaml")[0], &ds); err != nil {
		t.Fatal(err)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("the DaemonSet is not hostNetwork")
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != v1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v; want one that tolerates every taint", spec.Tolerations)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Add, []v1.Capability{"NET_ADMIN"}) || !slices.Equal(sc.Capabilities.Drop, []v1.Capability{"ALL"}) {
		t.Errorf("security context %+v; want not privileged, capabilities: drop ALL, add NET_ADMIN", sc)
	}
	if !slices.Contains(c.Command, "agent") {
		t.Errorf("command %v does not run the agent", c.Command)
	}
	hasNodeName := false
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			hasNodeName = true
		}
	}
	if !hasNodeName {
		t.Error("no NODE_NAME from spec.nodeName")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("no readiness probe on /readyz")
	}

	rbac := docs("../../deploy/10-rbac.yaml")
	var sa v1.ServiceAccount
	var role rbacv1.ClusterRole
	var binding rbacv1.ClusterRoleBinding
	for i, into := range []any{&sa, &role, &binding} {
		if err := yaml.UnmarshalStrict(rbac[i], into); err != nil {
			t.Fatal(err)
		}
	}
	if spec.ServiceAccountName != sa.Name || ds.Namespace != sa.Namespace {
		t.Errorf("the DaemonSet runs as %s/%s, the ServiceAccount is %s/%s", ds.Namespace, spec.ServiceAccountName, sa.Namespace, sa.Name)
	}
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("the binding does not bind %s to %s", role.Name, sa.Name)
	}
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			status := strings.HasSuffix(res, "/status")
			for _, verb := range r.Verbs {
				ok := (!status && (verb == "list" || verb == "watch")) || (status && verb == "update")
				if !ok {
					t.Errorf("the ClusterRole grants %s on %v/%s: more than the agent needs", verb, r.APIGroups, res)
				}
			}
		}
	}
}
