package main

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/nftpolicy/nftpolicy/internal/manifest"
)

// daemonSetAgent returns the agent container of deploy/20-daemonset.yaml.
func daemonSetAgent(t *testing.T) (image string, command []string) {
	t.Helper()
	data, err := os.ReadFile("../../deploy/20-daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Decode("20-daemonset.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if ds, ok := o.(*appsv1.DaemonSet); ok {
			for _, c := range ds.Spec.Template.Spec.Containers {
				if c.Name == "agent" {
					return c.Image, c.Command
				}
			}
		}
	}
	t.Fatal("deploy/20-daemonset.yaml has no DaemonSet with an agent container")
	return "", nil
}

var makeImage = regexp.MustCompile(`(?m)^IMAGE\s*\?=\s*(\S+)$`)

// TestImageMatchesDaemonSet: the image make image builds is the one the
// DaemonSet names, and its binary is where the DaemonSet's command runs it.
func TestImageMatchesDaemonSet(t *testing.T) {
	image, command := daemonSetAgent(t)
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := makeImage.FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile sets no IMAGE ?= ...")
	}
	if string(m[1]) != image {
		t.Errorf("make image builds %s; the DaemonSet runs %s", m[1], image)
	}
	df, err := os.ReadFile("../../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(command) < 2 || command[1] != "agent" {
		t.Fatalf("DaemonSet command %q, want [BINARY agent]", command)
	}
	for _, want := range []string{"FROM scratch\n", "COPY nftpolicy " + command[0] + "\n", `ENTRYPOINT ["` + command[0] + `"]` + "\n"} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("deploy/Dockerfile lacks %q (the DaemonSet runs %q)", want, command)
		}
	}
}

// TestImageRunsTheAgent builds the image with make image (into a temporary
// directory, under a tag of its own) and runs `/nftpolicy agent --help`
// in it, as the DaemonSet would start it.
//
// It needs podman and runc (Debian packages; make image installs them, the
// test does not) and root. On this project's machines containers run only
// with runc (Debian 12's crun refuses the hybrid cgroup hierarchy) and with
// rlimits no higher than the sandbox's, hence the --ulimit flags.
func TestImageRunsTheAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a container image")
	}
	for _, tool := range []string{"podman", "runc", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("cannot build or run the image without %s: `make image` installs podman and runc with apt-get (not part of make test)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("runs podman as root (rootless podman needs subuid ranges this test does not set up)")
	}
	dir := t.TempDir()
	image := "localhost/nftpolicy-test:" + randomTag(t)
	tarball := filepath.Join(dir, "image.tar")
	out, err := exec.Command("make", "-C", "../..", "image", "IMAGE="+image, "IMAGE_BUILD="+filepath.Join(dir, "build"), "IMAGE_TAR="+tarball).CombinedOutput()
	t.Cleanup(func() { exec.Command("podman", "rmi", "--force", image).Run() })
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	if names := tarNames(t, tarball); !slices.Contains(names, "manifest.json") {
		t.Errorf("%s is not a docker-archive: %v", tarball, names)
	}
	run := exec.Command("podman", "--runtime", "runc", "run", "--rm", "--network=none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", image, "agent", "--help")
	out, err = run.CombinedOutput()
	if err != nil {
		t.Fatalf("podman run %s agent --help: %v\n%s", image, err, out)
	}
	for _, want := range []string{"--hostname-override", "--metrics-bind-address", "--kubeconfig"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("agent --help in the image does not mention %s:\n%s", want, out)
		}
	}
}

func randomTag(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tarNames lists the files of a tarball.
func tarNames(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	r := tar.NewReader(f)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}
