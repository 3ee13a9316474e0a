package bench

import (
	"os"
	"os/exec"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/netns"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// The janitor deletes every namespace of its run on Close, and Down leaves
// a live run alone but sweeps a dead one's.
func TestJanitorOwnsItsNamespaces(t *testing.T) {
	testutil.NeedKernel(t)
	j, err := NewJanitor()
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.NetNS("a"); err != nil {
		t.Fatal(err)
	}
	if err := Down(); err != nil {
		t.Fatal(err)
	}
	if names, _ := netns.List(j.prefix); len(names) != 1 {
		t.Fatalf("after Down, the live run has %v, want its one namespace", names)
	}
	// A dead run: its namespace exists and nobody holds its lock.
	dead := "npperf-0dead0-"
	if out, err := exec.Command("ip", "netns", "add", dead+"x").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { netns.Delete([]string{dead + "x"}) })
	if err := Down(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(netns.Path(dead + "x")); !os.IsNotExist(err) {
		t.Fatalf("Down left the dead run's namespace: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if names, _ := netns.List(j.prefix); len(names) != 0 {
		t.Fatalf("after Close: %v left", names)
	}
}
