// Package netlab builds the network half of the lab: real network namespaces
// on this machine standing in for a cluster's nodes, pods and external hosts,
// and real TCP, UDP and SCTP probes between them (SCTP from raw sockets where
// the kernel has no SCTP sockets: sctp.go).
//
// Topology of one run (every namespace name starts with the run's prefix
// "nplab-<6 hex>-"; nothing is created in the host's own namespace):
//
//	               <prefix>fabric (bridge br0)
//	         m1 ────────────┼────────────── m3
//	         │              m2              │
//	       fab0            fab0            fab0
//	 <prefix>node-n1  <prefix>node-n2  <prefix>ext-e    node/external IPs
//	  pod1    pod2         pod3                         as /32 and /128
//	   │       │            │
//	  eth0    eth0         eth0
//	pod-x_a  pod-x_b      pod-y_c                       pod IPs as /32, /128
//
// Pods are routed, not bridged, the Calico way: a pod's eth0 holds its
// addresses as /32 and /128 and its default routes go to 169.254.1.1 and
// fe80::1, which answer with the node-side veth's MAC ee:ee:ee:ee:ee:ee.
// The node routes each pod address to the pod's veth. Nodes and externals
// hold their addresses as /32 and /128 on fab0 and route to every other
// member's addresses directly over the bridge, and to every pod address via
// the pod's node. There is no NAT anywhere.
//
// Every neighbour entry is static (nud permanent, MACs chosen by the lab), so
// no ARP or neighbour discovery ever runs. That keeps the lab deterministic:
// nothing waits for NDP or DAD, and a policy that drops ICMPv6 on a node
// cannot break the lab's own plumbing.
//
// Sockets are created in-process: a goroutine locks its OS thread, setns(2)s
// into the namespace, creates the socket and switches back; a socket keeps
// its namespace for life. Nothing but iproute2 is executed.
package netlab
