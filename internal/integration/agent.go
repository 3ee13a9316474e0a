package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// BuildNftpolicy builds this repository's binary into dir.
func BuildNftpolicy(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "nftpolicy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nftpolicy/nftpolicy/cmd/nftpolicy")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nftpolicy: %w\n%s", err, out)
	}
	return bin, nil
}

// AgentProcess is one `nftpolicy agent` process, as the DaemonSet runs it,
// programming the nftables of a lab node's namespace.
type AgentProcess struct {
	Node       string
	MetricsURL string // http://127.0.0.1:PORT
	LogPath    string
	proc       *proc
	log        *os.File
}

// AgentSpec says how to run an agent.
type AgentSpec struct {
	Binary, Kubeconfig, Node, NetNS string
	ResyncPeriod, MinSyncPeriod     time.Duration
	LogDir                          string
	Extra                           []string
	// Enter runs the agent inside this network namespace (ip netns exec;
	// a name under /run/netns), as a node's own process; NetNS is then
	// usually empty: the agent programs the namespace it runs in.
	Enter string
}

// StartAgent starts the agent binary; it dies with the test process.
func StartAgent(spec AgentSpec) (*AgentProcess, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	logPath := filepath.Join(spec.LogDir, "agent-"+spec.Node+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := []string{"agent",
		"--kubeconfig=" + spec.Kubeconfig,
		"--hostname-override=" + spec.Node,
		"--netns=" + spec.NetNS, // empty: its own
		"--metrics-bind-address=" + addr,
		"--v=2",
	}
	if spec.ResyncPeriod > 0 {
		args = append(args, "--resync-period="+spec.ResyncPeriod.String())
	}
	if spec.MinSyncPeriod > 0 {
		args = append(args, "--min-sync-period="+spec.MinSyncPeriod.String())
	}
	args = append(args, spec.Extra...)
	fmt.Fprintf(logf, "=== %s %s\n", spec.Binary, strings.Join(args, " "))
	bin := spec.Binary
	if spec.Enter != "" {
		bin, args = "ip", append([]string{"netns", "exec", spec.Enter, spec.Binary}, args...)
	}
	p, err := startProc(logf, bin, args...)
	if err != nil {
		logf.Close()
		return nil, err
	}
	return &AgentProcess{Node: spec.Node, MetricsURL: "http://" + addr, LogPath: logPath, proc: p, log: logf}, nil
}

// Running reports whether the process is still up.
func (p *AgentProcess) Running() bool { return p.proc.running() }

// Kill sends SIGKILL and reaps the process: no shutdown code runs.
func (p *AgentProcess) Kill() {
	p.proc.kill()
	p.log.Close()
}

// Stop sends SIGTERM and waits for the process to exit.
func (p *AgentProcess) Stop(timeout time.Duration) error {
	if !p.proc.running() {
		return nil
	}
	p.proc.signal(syscall.SIGTERM)
	select {
	case <-p.proc.exited:
		p.log.Close()
		return p.proc.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("agent on %s did not stop within %v after SIGTERM", p.Node, timeout)
	}
}

// Get fetches a path from the agent's metrics server.
func (p *AgentProcess) Get(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", p.MetricsURL+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// WaitReady waits for /readyz to answer 200: the first sync succeeded.
func (p *AgentProcess) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		if !p.proc.running() {
			return fmt.Errorf("agent on %s exited: %v%s", p.Node, p.proc.err, p.LogTail())
		}
		code, body, err := p.Get(ctx, "/readyz")
		if err == nil && code == 200 {
			return nil
		}
		last = fmt.Sprint(code, " ", body, err)
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("agent on %s not ready after %v: %s%s", p.Node, timeout, last, p.LogTail())
}

// LogTail is the end of the agent's log, for failure messages.
func (p *AgentProcess) LogTail() string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return "\n--- end of the agent's log ---\n" + string(data)
}
