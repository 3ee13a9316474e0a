package netlab

import (
	"bufio"
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// helperEnv makes the test binary, run as a child, build a lab and wait to
// be killed: how a real run leaves leftovers.
const helperEnv = "NETLAB_TEST_HELPER"

// TestHelperProcess is the child's side; it does nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper for other tests")
	}
	l := New("")
	if mode == "signal" {
		CleanupOnSignal(l)
	}
	if err := l.AddNode("n1", nil); err != nil {
		t.Fatal(err)
	}
	if err := l.AddPod("x/a", "n1", []netip.Addr{netip.MustParseAddr("10.244.1.10")}); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("PREFIX " + l.Prefix() + "\n")
	time.Sleep(time.Minute)
	t.Fatal("not killed")
}

// startHelper runs the child and returns it with its lab's prefix.
func startHelper(t *testing.T, mode string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "PREFIX "); ok {
			go func() {
				for sc.Scan() { // keep the pipe drained
				}
			}()
			return cmd, p
		}
	}
	t.Fatalf("helper said no prefix: %v", sc.Err())
	return nil, ""
}

func TestDownRemovesLeftoversOfKilledRunsOnly(t *testing.T) {
	testutil.NeedKernel(t)
	cmd, dead := startHelper(t, "leave")
	must(t, cmd.Process.Kill()) // SIGKILL: no chance to clean up
	cmd.Wait()
	leftovers := netnsWithPrefix(t, dead)
	if len(leftovers) != 3 { // fabric, node, pod: the helper made them all before it spoke
		t.Skipf("a concurrent Down (another test process) already took %v's namespaces", dead)
	}

	// A live lab in this process must survive Down.
	live, eps := twoNodeLab(t, true, false)
	removed, err := Down()
	must(t, err)
	// A Down in another test process may hold the dead run's lock while it
	// deletes; ours then skips the run as if live. Give that one a moment.
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left := netnsWithPrefix(t, dead)
		if len(left) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Errorf("after Down, left: %v", left)
			break
		}
	}
	for _, n := range leftovers {
		if !slices.Contains(removed, n) {
			// Gone, but not by us: a Down in another test process won.
			t.Logf("Down did not report %s (removed %v)", n, removed)
		}
	}
	for _, n := range removed {
		if strings.HasPrefix(n, live.Prefix()) {
			t.Errorf("Down removed %s of a live run", n)
		}
	}
	if got := live.Probe(context.Background(), eps[3], eps[5], 4, "TCP", 80, time.Second); got.Verdict != Allowed {
		t.Errorf("live lab after Down: %v", got)
	}
}

func TestCleanupOnSignal(t *testing.T) {
	testutil.NeedKernel(t)
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGTERM, 143}, {syscall.SIGINT, 130}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			cmd, prefix := startHelper(t, "signal")
			must(t, cmd.Process.Signal(tc.sig))
			err := cmd.Wait()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.code {
				t.Errorf("helper ended with %v, want exit status %d", err, tc.code)
			}
			if left := netnsWithPrefix(t, prefix); len(left) > 0 {
				t.Errorf("after %v, left: %v", tc.sig, left)
			}
		})
	}
}
