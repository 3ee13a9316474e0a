// Package integration runs nftpolicy against a real API server: it builds
// kube-apiserver and etcd from the Go module proxy (cached by version, see
// Build), starts them on 127.0.0.1 with a throwaway data dir, creates
// deploy/'s CRDs, RBAC and DaemonSet through the API, and runs the agent
// binary with the DaemonSet's service-account credentials for nodes of a
// netlab lab, whose real probes check enforcement.
//
// Env bundles all of that for a caller; CreateNode, CreatePod and
// DeletePod do what a kubelet and a scheduler would (bound pods, addresses
// through the status subresource, immediate deletes). They are the parts a
// lab run against a real API server needs.
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// Versions names what is built: the Kubernetes release matching the
// client-go this module uses, and the etcd that release depends on.
type Versions struct {
	Kubernetes string // v1.37.2
	Staging    string // v0.37.2: the published staging modules
	Etcd       string // v3.7.0
}

// Binaries are the built executables.
type Binaries struct {
	APIServer, Etcd string
}

// CacheDir is where built binaries are kept: $NFTPOLICY_CACHE_DIR, else
// $XDG_CACHE_HOME/nftpolicy, else ~/.cache/nftpolicy (else a folder in
// the temporary directory).
func CacheDir() (string, error) {
	if d := os.Getenv("NFTPOLICY_CACHE_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		// No $HOME nor $XDG_CACHE_HOME: still cache, for this boot.
		return filepath.Join(os.TempDir(), "nftpolicy-cache"), nil
	}
	return filepath.Join(d, "nftpolicy"), nil
}

// stagingVersion is the version of k8s.io/client-go this module uses
// (v0.37.2); the Kubernetes release is the same with major 1.
func stagingVersion() (string, error) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "k8s.io/client-go" {
				return d.Version, nil
			}
		}
	}
	// A binary that does not link client-go: ask the module.
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/client-go").Output()
	if err != nil {
		return "", fmt.Errorf("version of k8s.io/client-go: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Build returns kube-apiserver and etcd, building them on the first call
// for a version and reusing them after. log receives progress.
func Build(ctx context.Context, log io.Writer) (Binaries, error) {
	v, err := releaseVersions()
	if err != nil {
		return Binaries{}, err
	}
	dir, err := cacheEntry("kube", v)
	if err != nil {
		return Binaries{}, err
	}
	bins := Binaries{APIServer: filepath.Join(dir, "kube-apiserver"), Etcd: filepath.Join(dir, "etcd")}
	err = buildOnce(dir, []string{bins.APIServer, bins.Etcd}, func() error {
		start := time.Now()
		fmt.Fprintf(log, "integration: building kube-apiserver %s and etcd from the Go module proxy into %s (once per version; about 20 minutes on 2 cores)\n", v.Kubernetes, dir)
		if err := build(ctx, v, dir, log, []target{{"etcd", "go.etcd.io/etcd/server/v3"}, {"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"}}); err != nil {
			return err
		}
		fmt.Fprintf(log, "integration: built in %v\n", time.Since(start).Round(time.Second))
		return nil
	})
	if err != nil {
		return Binaries{}, err
	}
	return bins, nil
}

// BuildKubeProxy returns kube-proxy (cmd/kube-proxy of the same release
// as Build's kube-apiserver), building it on the first call. It has its
// own cache entry, so adding it never rebuilds the API server; its
// scratch module is the API server's, so the packages they share come
// from Go's build cache when that build ran on this machine.
func BuildKubeProxy(ctx context.Context, log io.Writer) (string, error) {
	v, err := releaseVersions()
	if err != nil {
		return "", err
	}
	dir, err := cacheEntry("kube-proxy", v)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kube-proxy")
	err = buildOnce(dir, []string{bin}, func() error {
		start := time.Now()
		fmt.Fprintf(log, "integration: building kube-proxy %s from the Go module proxy into %s (once per version; about 5 minutes on 2 cores after kube-apiserver)\n", v.Kubernetes, dir)
		if err := build(ctx, v, dir, log, []target{{"kube-proxy", "k8s.io/kubernetes/cmd/kube-proxy"}}); err != nil {
			return err
		}
		fmt.Fprintf(log, "integration: built kube-proxy in %v\n", time.Since(start).Round(time.Second))
		return nil
	})
	return bin, err
}

// releaseVersions is the Kubernetes release matching this module's
// client-go.
func releaseVersions() (Versions, error) {
	staging, err := stagingVersion()
	if err != nil {
		return Versions{}, err
	}
	if !strings.HasPrefix(staging, "v0.") {
		return Versions{}, fmt.Errorf("k8s.io/client-go %s: not a release version", staging)
	}
	return Versions{Kubernetes: "v1." + strings.TrimPrefix(staging, "v0."), Staging: staging}, nil
}

// cacheEntry is the cache folder of one build: its name, the release and
// the Go toolchain that built it.
func cacheEntry(name string, v Versions) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, fmt.Sprintf("%s-%s-%s-%s_%s", name, v.Kubernetes, runtime.Version(), runtime.GOOS, runtime.GOARCH)), nil
}

// buildOnce runs do unless every file of outs exists, one build at a
// time per folder (go test runs packages in parallel; make runs the
// build before the tests).
func buildOnce(dir string, outs []string, do func() error) error {
	all := func() bool {
		for _, o := range outs {
			if !exists(o) {
				return false
			}
		}
		return true
	}
	if all() {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	if all() {
		return nil
	}
	return do()
}

// target is one binary to build: its file name and its package.
type target struct{ name, pkg string }

func exists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// build makes a scratch module that requires k8s.io/kubernetes and etcd's
// server. Kubernetes's go.mod requires its staging modules at v0.0.0 and
// replaces them with ./staging/src/k8s.io/...; those folders are not in
// the module's zip, and a dependency's replaces do not apply anyway. So
// the scratch module carries the same replaces rewritten to the published
// versions (k8s.io/api => k8s.io/api v0.37.2, ...). etcd's server module
// replaces its siblings with ../api and so on, but requires them at real
// versions, which is all a dependent module sees.
func build(ctx context.Context, v Versions, out string, log io.Writer, targets []target) error {
	work, err := os.MkdirTemp("", "nftpolicy-kubebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// The scratch module stands alone (no workspace) and may update its
	// go.sum as it resolves.
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"), "CGO_ENABLED=0")
	goCmd := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = work, env, log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
		return nil
	}

	// Kubernetes's own go.mod: which modules it replaces with staging
	// folders, and which etcd it uses.
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", "k8s.io/kubernetes@"+v.Kubernetes)
	dl.Dir, dl.Env, dl.Stderr = work, env, log
	raw, err := dl.Output()
	if err != nil {
		return fmt.Errorf("go mod download k8s.io/kubernetes@%s: %w", v.Kubernetes, err)
	}
	var info struct{ GoMod, Error string }
	if err := json.Unmarshal(raw, &info); err != nil || info.Error != "" {
		return fmt.Errorf("go mod download k8s.io/kubernetes@%s: %v %s", v.Kubernetes, err, info.Error)
	}
	// go mod edit reads a go.mod file given by path, and writes one.
	ej := exec.CommandContext(ctx, "go", "mod", "edit", "-json", info.GoMod)
	ej.Dir, ej.Env, ej.Stderr = work, env, log
	raw, err = ej.Output()
	if err != nil {
		return fmt.Errorf("go mod edit -json %s: %w", info.GoMod, err)
	}
	type modVer struct{ Path, Version string }
	var kmod struct {
		Go      string
		Require []struct{ Path, Version string }
		Replace []struct{ Old, New modVer }
	}
	if err := json.Unmarshal(raw, &kmod); err != nil {
		return fmt.Errorf("k8s.io/kubernetes@%s go.mod: %w", v.Kubernetes, err)
	}
	for _, r := range kmod.Require {
		if r.Path == "go.etcd.io/etcd/server/v3" {
			v.Etcd = r.Version
		}
	}
	if v.Etcd == "" {
		return fmt.Errorf("k8s.io/kubernetes@%s does not require go.etcd.io/etcd/server/v3", v.Kubernetes)
	}
	gomod := "module nftpolicy.local/kubebuild\n\ngo " + kmod.Go + "\n"
	if err := os.WriteFile(filepath.Join(work, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	edits := []string{"mod", "edit", "-require=k8s.io/kubernetes@" + v.Kubernetes, "-require=go.etcd.io/etcd/server/v3@" + v.Etcd}
	for _, r := range kmod.Replace {
		if !strings.HasPrefix(r.New.Path, "./staging/") {
			return fmt.Errorf("k8s.io/kubernetes@%s: unexpected replace %s => %s", v.Kubernetes, r.Old.Path, r.New.Path)
		}
		edits = append(edits, "-replace="+r.Old.Path+"="+r.Old.Path+"@"+v.Staging)
	}
	if err := goCmd(edits...); err != nil {
		return err
	}
	// Every binary's package is imported whatever is built, so that the
	// module graph (and so Go's build cache keys) is the same for all.
	tools := "//go:build tools\n\npackage tools\n\nimport (\n\t_ \"go.etcd.io/etcd/server/v3\"\n\t_ \"k8s.io/kubernetes/cmd/kube-apiserver\"\n\t_ \"k8s.io/kubernetes/cmd/kube-proxy\"\n)\n"
	if err := os.WriteFile(filepath.Join(work, "tools.go"), []byte(tools), 0o644); err != nil {
		return err
	}
	if err := goCmd("mod", "tidy"); err != nil {
		return err
	}
	minor := strings.Split(strings.TrimPrefix(v.Kubernetes, "v"), ".")[1]
	ldflags := "-s -w" +
		" -X k8s.io/component-base/version.gitVersion=" + v.Kubernetes +
		" -X k8s.io/component-base/version.gitMajor=1" +
		" -X k8s.io/component-base/version.gitMinor=" + minor
	// Into temporary names first: a cancelled build leaves no half file
	// under the final name.
	for _, t := range targets {
		flags := ldflags
		if strings.HasPrefix(t.pkg, "go.etcd.io/") {
			flags = "-s -w"
		}
		if err := goCmd("build", "-trimpath", "-ldflags", flags, "-o", filepath.Join(out, t.name+".tmp"), t.pkg); err != nil {
			return err
		}
	}
	for _, t := range targets {
		if err := os.Rename(filepath.Join(out, t.name+".tmp"), filepath.Join(out, t.name)); err != nil {
			return err
		}
	}
	return nil
}
