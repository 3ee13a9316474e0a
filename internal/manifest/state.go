package manifest

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
)

// State is the set of objects that exist at one point of a scenario, keyed
// as the API server keys them. The loader walks a State through the steps
// to check each step against the cluster it will meet; the lab can use one
// to know what exists (it adds addresses on its own copies).
type State struct {
	refs   []ObjectRef // creation order; a replaced object keeps its place
	objs   map[ObjectRef]runtime.Object
	placed int // pods placed round-robin so far
}

// NewState returns an empty State.
func NewState() *State {
	return &State{objs: map[ObjectRef]runtime.Object{}}
}

// Get returns the object ref names, or nil.
func (s *State) Get(ref ObjectRef) runtime.Object { return s.objs[ref] }

// Objects returns the objects in creation order.
func (s *State) Objects() []runtime.Object {
	out := make([]runtime.Object, len(s.refs))
	for i, r := range s.refs {
		out[i] = s.objs[r]
	}
	return out
}

// Nodes returns the names of the Nodes, in creation order.
func (s *State) Nodes() []string {
	var out []string
	for _, r := range s.refs {
		if r.Kind == "Node" {
			out = append(out, r.Name)
		}
	}
	return out
}

// Apply creates obj, or replaces the object of that kind, namespace and
// name. It completes obj in place as the cluster would and stores a copy:
// a new Pod without spec.nodeName is placed round-robin over the nodes
// (docs/scenarios.md); an existing Pod keeps its node and the addresses the file
// gave it, and may not change its node, hostNetwork or container ports,
// which the API server does not let a pod update change.
func (s *State) Apply(obj runtime.Object) error {
	ref := RefOf(obj)
	old, exists := s.objs[ref]
	if pod, ok := obj.(*corev1.Pod); ok {
		if exists {
			if err := carryOver(old.(*corev1.Pod), pod); err != nil {
				return err
			}
		} else if pod.Spec.NodeName == "" {
			nodes := s.Nodes()
			if len(nodes) == 0 {
				return fmt.Errorf("%s: no node to place it on", ref)
			}
			pod.Spec.NodeName = nodes[s.placed%len(nodes)]
			s.placed++
		}
	}
	if !exists {
		s.refs = append(s.refs, ref)
	}
	s.objs[ref] = obj.DeepCopyObject()
	return nil
}

// carryOver gives an updated pod what the old one had and the update
// leaves out, and refuses changes a pod update cannot make.
func carryOver(old, pod *corev1.Pod) error {
	ref := RefOf(pod)
	if pod.Spec.NodeName == "" {
		pod.Spec.NodeName = old.Spec.NodeName
	}
	if pod.Spec.NodeName != old.Spec.NodeName {
		return fmt.Errorf("%s: spec.nodeName cannot change from %s to %s; delete the pod and apply it again", ref, old.Spec.NodeName, pod.Spec.NodeName)
	}
	if pod.Spec.HostNetwork != old.Spec.HostNetwork {
		return fmt.Errorf("%s: spec.hostNetwork cannot change; delete the pod and apply it again", ref)
	}
	if !apiequality.Semantic.DeepEqual(containerPorts(old), containerPorts(pod)) {
		return fmt.Errorf("%s: container ports cannot change; delete the pod and apply it again", ref)
	}
	if len(pod.Status.PodIPs) == 0 {
		pod.Status.PodIPs = slices.Clone(old.Status.PodIPs)
		pod.Status.PodIP = old.Status.PodIP
	} else if len(old.Status.PodIPs) > 0 && !apiequality.Semantic.DeepEqual(pod.Status.PodIPs, old.Status.PodIPs) {
		return fmt.Errorf("%s: status.podIPs cannot change; a pod keeps its addresses", ref)
	}
	return nil
}

func containerPorts(p *corev1.Pod) [][]corev1.ContainerPort {
	var out [][]corev1.ContainerPort
	for _, c := range p.Spec.Containers {
		out = append(out, c.Ports)
	}
	return out
}

// Delete removes the object ref names, with what the cluster removes along
// with it: a Namespace's objects (the namespace controller) and the Pods
// bound to a Node (pod garbage collection). It returns every removed
// reference, ref first.
func (s *State) Delete(ref ObjectRef) ([]ObjectRef, error) {
	if _, ok := s.objs[ref]; !ok {
		return nil, fmt.Errorf("%s does not exist", ref)
	}
	removed := []ObjectRef{ref}
	for _, r := range s.refs {
		switch {
		case ref.Kind == "Namespace" && r.Namespace == ref.Name:
			removed = append(removed, r)
		case ref.Kind == "Node" && r.Kind == "Pod" && s.objs[r].(*corev1.Pod).Spec.NodeName == ref.Name:
			removed = append(removed, r)
		}
	}
	for _, r := range removed {
		delete(s.objs, r)
	}
	s.refs = slices.DeleteFunc(s.refs, func(r ObjectRef) bool { return slices.Contains(removed, r) })
	return removed, nil
}

// checkRefs reports what obj needs and the State lacks: its namespace, and
// for a Pod its node.
func (s *State) checkRefs(obj runtime.Object) error {
	ref := RefOf(obj)
	if ref.Namespace != "" {
		if _, ok := s.objs[ObjectRef{Kind: "Namespace", Name: ref.Namespace}]; !ok {
			return fmt.Errorf("%s: namespace %q does not exist", ref, ref.Namespace)
		}
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		if _, ok := s.objs[ObjectRef{Kind: "Node", Name: pod.Spec.NodeName}]; !ok {
			return fmt.Errorf("%s: node %q does not exist", ref, pod.Spec.NodeName)
		}
	}
	return nil
}
