package bench

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine describes where the numbers come from.
type Machine struct {
	CPU         string `json:"cpu"`
	Cores       int    `json:"cores"`
	MemoryGiB   int    `json:"memory_gib"`
	Kernel      string `json:"kernel"`
	Go          string `json:"go"`
	Nft         string `json:"nft"`
	Iptables    string `json:"iptables,omitempty"`
	Ipset       string `json:"ipset,omitempty"`
	LoadStart   string `json:"load_start"` // /proc/loadavg: others' work shares the machine
	LoadEnd     string `json:"load_end"`
	Concurrency string `json:"concurrency"`
}

func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadavg(),
		Concurrency: "other engineers' builds and tests may run at the same time; see the load averages"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryGiB = int((uint64(si.Totalram)*uint64(si.Unit) + 1<<29) >> 30)
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.Nft = version("nft", "--version")
	m.Iptables = version("iptables", "--version")
	m.Ipset = version("ipset", "--version")
	return m
}

func version(args ...string) string {
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
