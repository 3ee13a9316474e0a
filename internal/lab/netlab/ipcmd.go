package netlab

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// CommandError is a failed iproute2 command, with what it was fed and what it
// said.
type CommandError struct {
	Args   []string // e.g. ["ip", "-n", "nplab-1a2b3c-node-n1", "-batch", "-"]
	Line   string   // the failing batch line, when ip names one
	Stderr string
	Err    error
}

func (e *CommandError) Error() string {
	msg := strings.Join(e.Args, " ")
	if e.Line != "" {
		msg += fmt.Sprintf(" (line %q)", e.Line)
	}
	return fmt.Sprintf("%s: %v: %s", msg, e.Err, strings.TrimSpace(e.Stderr))
}

func (e *CommandError) Unwrap() error { return e.Err }

// batchLineRE finds the line number in ip's "Command failed -:3".
var batchLineRE = regexp.MustCompile(`Command failed -:(\d+)`)

// ip runs one iproute2 command.
func ip(args ...string) error {
	return run(append([]string{"ip"}, args...), nil)
}

// ipBatch runs lines through `ip [-n ns] -batch -`: one process for many
// changes keeps setup fast. ns == "" would mean the host's namespace, which
// the lab never configures, so it is refused.
func ipBatch(ns string, lines []string) error {
	if ns == "" {
		return fmt.Errorf("netlab: refusing to configure the host namespace")
	}
	if len(lines) == 0 {
		return nil
	}
	return run([]string{"ip", "-n", ns, "-batch", "-"}, lines)
}

func run(args []string, stdin []string) error {
	cmd := exec.Command(args[0], args[1:]...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(strings.Join(stdin, "\n") + "\n")
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		e := &CommandError{Args: args, Stderr: out.String(), Err: err}
		if m := batchLineRE.FindStringSubmatch(e.Stderr); m != nil {
			if n, _ := strconv.Atoi(m[1]); n >= 1 && n <= len(stdin) {
				e.Line = stdin[n-1]
			}
		}
		return e
	}
	return nil
}

// linkStateRE reads a link's queueing discipline and operational state
// from `ip -o link show`.
var linkStateRE = regexp.MustCompile(` qdisc (\S+) .*\bstate (\S+)`)

// linkReadyTimeout bounds waitLinkReady.
const linkReadyTimeout = 5 * time.Second

// waitLinkReady waits until a link in ns passes packets. A new veth drops
// them until the kernel has handled its carrier (the link's queue is
// attached then, and its state becomes UP); on a busy machine that can come
// after a probe's first SYN, which then waits a whole retransmission: the
// likely cause of a TestRemovePod timeout in one CI run (the first probe
// to a re-added pod, while the lab suites ran beside it), which 300 runs
// under a lab suite's load did not repeat.
func waitLinkReady(ns, link string) error {
	deadline := time.Now().Add(linkReadyTimeout)
	for {
		out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "dev", link).CombinedOutput()
		m := linkStateRE.FindSubmatch(out)
		if err == nil && m != nil && string(m[1]) != "noop" && string(m[2]) == "UP" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netlab: %s in %s not up after %v: %s", link, ns, linkReadyTimeout, bytes.TrimSpace(out))
		}
		time.Sleep(2 * time.Millisecond)
	}
}
