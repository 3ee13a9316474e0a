package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

const examples = "../../test/scenarios/examples"

// TestCompileExamplesLoadIntoKernel: `nftpolicy compile` of every example
// scenario, for each node, is nft text the kernel accepts.
func TestCompileExamplesLoadIntoKernel(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examples, "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no examples found")
	}
	ns := tu.NetNS(t)
	for _, f := range files {
		for _, node := range []string{"node-1", "node-2"} {
			var out, errOut bytes.Buffer
			if code := compileCmd([]string{"-f", f, "--node", node}, &out, &errOut); code != 0 {
				t.Fatalf("%s: exit %d: %s", f, code, errOut.String())
			}
			if errOut.Len() != 0 && !strings.Contains(errOut.String(), "no Node") {
				t.Errorf("%s: unexpected warnings: %q", f, errOut.String())
			}
			if msg, err := tu.NftIn(t, ns, out.String(), "-f", "-"); err != nil {
				t.Fatalf("%s on %s: nft -f: %v\n%s\n%s", f, node, err, msg, out.String())
			}
			if msg, err := tu.NftIn(t, ns, "", "delete", "table", "inet", "nftpolicy"); err != nil {
				t.Fatalf("delete table: %v: %s", err, msg)
			}
		}
	}
}

func TestCompileBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {bogus: 1}\n")
	var out, errOut bytes.Buffer
	if code := compileCmd([]string{"-f", bad, "--node", "n"}, &out, &errOut); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(errOut.String(), "bad.yaml") || !strings.Contains(errOut.String(), "bogus") {
		t.Errorf("message does not name the file and the problem: %q", errOut.String())
	}
	if out.Len() != 0 {
		t.Errorf("printed a ruleset for bad input:\n%s", out.String())
	}
}

func TestCompileWarnsAboutInvalidPolicies(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "anp.yaml"), `apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: odd}
spec:
  priority: 5000
  subject: {namespaces: {}}
  ingress:
    - {action: Deny, from: [{namespaces: {}}]}
`)
	var out, errOut bytes.Buffer
	if code := compileCmd([]string{"-f", dir, "--node", "n1"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "AdminNetworkPolicy/odd: priority 5000 out of range") {
		t.Errorf("no warning naming the policy and the problem: %q", errOut.String())
	}
}

func TestCompileManifest(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "m.yaml"), `apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIPs: [{ip: 10.0.0.1}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec: {podSelector: {matchLabels: {app: a}}, ingress: [{ports: [{port: 80}]}]}
`)
	var out, errOut bytes.Buffer
	if code := compileCmd([]string{"-f", dir, "--node", "n1"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"10.0.0.1 : goto ingress-class-", `comment "x/p ingress rule 0`, "tcp . 80"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// --verdict-logs as the agent's: drops by default (a log rule before each
// drop, in the chosen group), none compiles no log rule, a bad value is a
// usage error.
func TestCompileVerdictLogs(t *testing.T) {
	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := compileCmd(append([]string{"-f", testCluster, "--node", "node-1"}, args...), &out, &errOut)
		return code, out.String()
	}
	code, def := run()
	if code != 0 || !strings.Contains(def, `log prefix "np:D:`) || !strings.Contains(def, " group 100 ") {
		t.Errorf("default: exit %d, no drop logged in group 100", code)
	}
	if code, out := run("--verdict-logs", "none"); code != 0 || strings.Contains(out, "log prefix") {
		t.Errorf("--verdict-logs none: exit %d, log rules present: %v", code, strings.Contains(out, "log prefix"))
	}
	if code, out := run("--verdict-log-group", "7"); code != 0 || !strings.Contains(out, " group 7 ") {
		t.Errorf("--verdict-log-group 7: exit %d", code)
	}
	if code, _ := run("--verdict-logs", "some"); code != 2 {
		t.Errorf("--verdict-logs some: exit %d, want 2", code)
	}
}
