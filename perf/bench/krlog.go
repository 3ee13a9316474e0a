package bench

import (
	"bufio"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// What kube-router v2.1.0 tells about its syncs, read from its log (at
// --v=1) and its metrics. Every sync of its firewall controller is a full
// rebuild that logs "Starting sync of iptables with version: V" and, when
// it ends for whatever reason, "sync iptables took D": the duration line
// comes from a defer, so an aborted sync logs it too, and only an
// "Aborting sync" error line tells the two apart.

// krSyncs is kube-router's syncs as its log tells them.
type krSyncs struct {
	Started int             // "Starting sync of iptables"
	Ended   int             // "sync iptables took"
	Aborted int             // "Aborting sync. …" (each also ended)
	Errors  []string        // the error lines (E…), first few
	Took    []time.Duration // each ended sync's duration
}

var (
	krStartRE = regexp.MustCompile(`\] Starting sync of iptables with version: `)
	krTookRE  = regexp.MustCompile(`\] sync iptables took (\S+)\s*$`)
)

// parseKubeRouterLog reads kube-router's klog output.
func parseKubeRouterLog(log string) krSyncs {
	var s krSyncs
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 16<<20) // an aborted restore logs the whole table on one line
	for sc.Scan() {
		line := sc.Text()
		switch {
		case krStartRE.MatchString(line):
			s.Started++
		case krTookRE.MatchString(line):
			s.Ended++
			if d, err := time.ParseDuration(krTookRE.FindStringSubmatch(line)[1]); err == nil {
				s.Took = append(s.Took, d)
			}
		}
		if strings.HasPrefix(line, "E") && strings.Contains(line, "] ") {
			if strings.Contains(line, "Aborting sync") {
				s.Aborted++
			}
			if len(s.Errors) < 5 {
				if len(line) > 300 {
					line = line[:300] + "…"
				}
				s.Errors = append(s.Errors, line)
			}
		}
	}
	return s
}

// idle reports whether no sync is running: every sync started has ended.
func (s krSyncs) idle() bool { return s.Started == s.Ended }

// krMetrics are the figures of kube-router's /metrics the results quote.
type krMetrics struct {
	SyncCount   int     // kube_router_controller_iptables_sync_time_count
	SyncSumSecs float64 // kube_router_controller_iptables_sync_time_sum
	Chains      int     // kube_router_controller_policy_chains
	IPSets      int     // kube_router_controller_policy_ipsets
}

// parseKubeRouterMetrics reads the Prometheus text format; absent metrics
// stay zero, and ok says whether the sync histogram was there at all.
func parseKubeRouterMetrics(text string) (m krMetrics, ok bool) {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, found := strings.Cut(strings.TrimSpace(line), " ")
		if !found {
			continue
		}
		if i := strings.IndexByte(name, '{'); i >= 0 {
			continue // labelled series (histogram buckets): not quoted
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch name {
		case "kube_router_controller_iptables_sync_time_count":
			m.SyncCount, ok = int(v), true
		case "kube_router_controller_iptables_sync_time_sum":
			m.SyncSumSecs = v
		case "kube_router_controller_policy_chains":
			m.Chains = int(v)
		case "kube_router_controller_policy_ipsets":
			m.IPSets = int(v)
		}
	}
	return m, ok
}
