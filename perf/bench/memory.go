package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// The agent's memory is measured in a process of its own, so the suite's
// copies of the cluster do not count. That process still holds the fake API
// server and its objects; they are measured before the agent starts and
// subtracted.

// measureMemory runs `<this binary> mem SIZE SEED NETNS`.
func measureMemory(j *Janitor, cfg Config, size gen.Size) (*MemResult, error) {
	ns, err := j.NetNS("mem-" + size.Name)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "mem", size.Name, strconv.FormatUint(cfg.Seed, 10), ns.Path())
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	var r MemResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	return &r, nil
}

// RunMemory is the child's main: it programs the node from the cluster of
// sizeName, runs one round of events, and prints a MemResult as JSON.
func RunMemory(sizeName string, seed uint64, nsPath string) error {
	size, nsfd, err := childSetup("mem", nsPath, sizeName)
	if err != nil {
		return err
	}
	ctx := context.Background()
	run, events := func() (*agentRun, []gen.Event) {
		c := gen.Generate(size, seed)
		return newAgentRun(c.Objects(), nft.NewNetlink(nsfd)), c.Events(gen.NodeUnderTest, 1)
	}()
	var r MemResult
	r.BaseHeapMB, r.BaseRSSMB = settle()
	run.start(ctx)
	defer run.stop()
	if _, err := run.kernel.next(ctx, 15*time.Minute); err != nil {
		return err
	}
	r.HeapMB, r.RSSMB = settle()
	r.AgentHeapMB, r.AgentRSSMB = r.HeapMB-r.BaseHeapMB, r.RSSMB-r.BaseRSSMB
	for _, e := range events {
		if err := run.apply(ctx, e); err != nil {
			return err
		}
		if _, err := run.kernel.next(ctx, 10*time.Minute); err != nil {
			return err
		}
	}
	_, r.AfterEventsRSSMB = settle()
	r.PeakRSSMB = procStatusMB("VmHWM")
	return json.NewEncoder(os.Stdout).Encode(r)
}

// settle collects garbage, returns freed memory to the OS, and reads the
// live heap and the resident set.
func settle() (heapMB, rssMB float64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20), procStatusMB("VmRSS")
}

// procStatusMB reads a "kB" line of /proc/self/status.
func procStatusMB(key string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		return kb / 1024
	}
	return 0
}
