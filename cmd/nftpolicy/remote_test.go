package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRemoteKubeconfigs(t *testing.T) {
	dir := t.TempDir()
	// A mounted Secret: ..data holds the files, the keys are symlinks.
	data := filepath.Join(dir, "..2026_12_04")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cluster-three", "cluster-four"} {
		if err := os.WriteFile(filepath.Join(data, k), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..2026_12_04", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("..2026_12_04", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	got, err := remoteKubeconfigs([]string{"cluster-two=/k/two"}, dir, "cluster-one")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range got {
		names = append(names, r.name+"="+filepath.Base(r.path))
	}
	if s := strings.Join(names, " "); s != "cluster-four=cluster-four cluster-three=cluster-three cluster-two=two" {
		t.Fatalf("remotes: %s", s)
	}
	for _, bad := range [][]string{{"two"}, {"Two=/k"}, {"a/b=/k"}, {"cluster-one=/k"}, {"x=/a", "x=/b"}, {"x="}} {
		if _, err := remoteKubeconfigs(bad, "", "cluster-one"); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
