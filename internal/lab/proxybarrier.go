package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The service proxy's part of the sync barrier. kube-proxy says nothing
// about which Service versions it has applied, so the barrier reads what
// it programmed: each node's `ip kube-proxy` and `ip6 kube-proxy` tables
// must hold exactly the cluster IPs of the Services that exist, and for
// every port of the run's Services the verdict kube-proxy gives its
// cluster IP and node port with the endpoint set the lab's EndpointSlices
// name (per node, for externalTrafficPolicy Local). kube-proxy applies a
// sync in one transaction, so a table that shows all of it shows the
// step. The names used are those of kube-proxy v1.37's nftables proxier
// (pkg/proxy/nftables): sets cluster-ips, maps service-ips,
// no-endpoint-services, service-nodeports, no-endpoint-nodeports, chains
// service-HASH-NS/NAME/PROTO/PORTNAME and local-HASH-....

// proxyTable is what the barrier reads of one kube-proxy table.
type proxyTable struct {
	elements map[string][]string // set or map name → element keys ("10.96.0.10 . tcp . 80")
	chains   map[string]string   // chain name → body
}

var blockRE = regexp.MustCompile(`(?m)^\s*(set|map|chain) (\S+) \{`)

// parseProxyTable reads `nft list table` text.
func parseProxyTable(text string) proxyTable {
	t := proxyTable{elements: map[string][]string{}, chains: map[string]string{}}
	for _, m := range blockRE.FindAllStringSubmatchIndex(text, -1) {
		kind, name := text[m[2]:m[3]], text[m[4]:m[5]]
		body := braced(text[m[1]-1:])
		if kind == "chain" {
			t.chains[name] = body
			continue
		}
		_, elems, ok := strings.Cut(body, "elements = {")
		if !ok {
			t.elements[name] = nil
			continue
		}
		elems = elems[:strings.LastIndex(elems, "}")]
		for _, e := range strings.Split(elems, ",") {
			key, _, _ := strings.Cut(e, " : ")
			key, _, _ = strings.Cut(key, " comment ")
			t.elements[name] = append(t.elements[name], strings.Join(strings.Fields(key), " "))
		}
	}
	return t
}

// braced returns s from its opening brace to the matching closing one.
func braced(s string) string {
	depth := 0
	for i, c := range s {
		switch c {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return s[1:i]
			}
		}
	}
	return s
}

var (
	dnatOneRE  = regexp.MustCompile(`dnat to (\S+)`)
	dnatManyRE = regexp.MustCompile(`\d+ : ([0-9a-fA-F.:]+) \. (\d+)`)
)

// chainEndpoints returns the endpoints a service or local chain DNATs to,
// sorted; ok is false when there is no such chain.
func (t proxyTable) chainEndpoints(prefix, base string) ([]string, bool) {
	for name, body := range t.chains {
		rest, found := strings.CutPrefix(name, prefix)
		if !found || len(rest) < 9 || rest[8:] != "-"+base {
			continue
		}
		var out []string
		for _, m := range dnatOneRE.FindAllStringSubmatch(body, -1) {
			if ap, err := netip.ParseAddrPort(m[1]); err == nil {
				out = append(out, ap.String())
			}
		}
		for _, m := range dnatManyRE.FindAllStringSubmatch(body, -1) {
			if ip, err := netip.ParseAddr(m[1]); err == nil {
				port, _ := strconv.Atoi(m[2])
				out = append(out, netip.AddrPortFrom(ip, uint16(port)).String())
			}
		}
		slices.Sort(out)
		return out, true
	}
	return nil, false
}

func (t proxyTable) has(set, key string) bool { return slices.Contains(t.elements[set], key) }

// readProxyTable lists a node's kube-proxy table of one family.
func (r *run) readProxyTable(node string, fam corev1.IPFamily) (proxyTable, error) {
	family := "ip"
	if fam == corev1.IPv6Protocol {
		family = "ip6"
	}
	out, err := exec.Command("ip", "netns", "exec", filepath.Base(r.net.NodeNetNSPath(node)), "nft", "list", "table", family, "kube-proxy").CombinedOutput()
	if err != nil {
		return proxyTable{}, fmt.Errorf("nft list table %s kube-proxy: %v: %s", family, err, strings.TrimSpace(string(out)))
	}
	return parseProxyTable(string(out)), nil
}

// proxyMismatch returns what a node's kube-proxy has not (yet) programmed
// of the current state; "" when it has all of it.
func (r *run) proxyMismatch(node string, all []corev1.Service) (string, error) {
	for _, fam := range []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol} {
		// Exactly the cluster IPs of the Services that exist (the API
		// server's own default/kubernetes among them).
		var want []string
		for _, svc := range all {
			for _, s := range svc.Spec.ClusterIPs {
				if ip, err := netip.ParseAddr(s); err == nil && familyOf(ip) == fam {
					want = append(want, ip.String())
				}
			}
		}
		slices.Sort(want)
		t, err := r.readProxyTable(node, fam)
		if err != nil {
			if len(want) == 0 {
				// A family no Service uses: kube-proxy may not run it
				// (a node with addresses of one family).
				continue
			}
			return err.Error(), nil
		}
		got := slices.Sorted(slices.Values(t.elements["cluster-ips"]))
		if !slices.Equal(got, want) {
			return fmt.Sprintf("%s cluster-ips %v, want %v", fam, got, want), nil
		}
		for _, svc := range r.services() {
			var clusterIP string
			for _, s := range svc.Spec.ClusterIPs {
				if ip, err := netip.ParseAddr(s); err == nil && familyOf(ip) == fam {
					clusterIP = ip.String()
				}
			}
			if clusterIP == "" {
				continue
			}
			for _, sp := range svc.Spec.Ports {
				proto := strings.ToLower(string(sp.Protocol))
				base := svc.Namespace + "/" + svc.Name + "/" + proto + "/" + sp.Name
				var eps, local []string
				for _, ep := range r.serviceEndpoints(svc, sp, fam) {
					eps = append(eps, ep.addr.String())
					if ep.node == node {
						local = append(local, ep.addr.String())
					}
				}
				slices.Sort(eps)
				slices.Sort(local)
				key := clusterIP + " . " + proto + " . " + strconv.Itoa(int(sp.Port))
				if len(eps) == 0 {
					if !t.has("no-endpoint-services", key) {
						return fmt.Sprintf("%s: %s not yet without endpoints", base, key), nil
					}
				} else {
					if !t.has("service-ips", key) {
						return fmt.Sprintf("%s: %s not in service-ips", base, key), nil
					}
					if got, _ := t.chainEndpoints("service-", base); !slices.Equal(got, eps) {
						return fmt.Sprintf("%s: endpoints %v, want %v", base, got, eps), nil
					}
				}
				if svc.Spec.Type != corev1.ServiceTypeNodePort {
					continue
				}
				npKey := proto + " . " + strconv.Itoa(int(sp.NodePort))
				localPolicy := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
				switch {
				case len(eps) == 0 || localPolicy && len(local) == 0:
					if !t.has("no-endpoint-nodeports", npKey) {
						return fmt.Sprintf("%s: node port %s not yet without endpoints", base, npKey), nil
					}
				case !t.has("service-nodeports", npKey):
					return fmt.Sprintf("%s: node port %s not in service-nodeports", base, npKey), nil
				case localPolicy:
					if got, _ := t.chainEndpoints("local-", base); !slices.Equal(got, local) {
						return fmt.Sprintf("%s: local endpoints %v, want %v", base, got, local), nil
					}
				}
				if !localPolicy && t.has("no-endpoint-nodeports", npKey) && len(eps) > 0 {
					return fmt.Sprintf("%s: node port %s still without endpoints", base, npKey), nil
				}
			}
		}
	}
	return "", nil
}

// proxyBarrier waits until every node's kube-proxy has programmed the
// current Services and endpoints, polling its tables.
func (r *run) proxyBarrier(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.BarrierTimeout)
	defer cancel()
	for _, n := range r.sc.Nodes {
		for {
			list, err := r.cp.kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
			var why string
			if err == nil {
				why, err = r.proxyMismatch(n, list.Items)
			}
			if err == nil && why == "" {
				break
			}
			if kp := r.cp.proxies[n]; kp != nil && !kp.Running() {
				return fmt.Errorf("kube-proxy on %s exited:\n%s", n, kp.LogTail())
			}
			if ctx.Err() != nil {
				if err != nil {
					why = err.Error()
				}
				return errors.New("kube-proxy on " + n + " has not applied the step: " + why)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}
