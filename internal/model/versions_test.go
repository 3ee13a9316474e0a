package model

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/randfill"
)

// TestCNPVersionsShareOneLayout walks the two ClusterNetworkPolicy types
// side by side: the same fields, names, JSON tags and offsets all the way
// down, which is what CNPFromBeta's reinterpretation relies on.
func TestCNPVersionsShareOneLayout(t *testing.T) {
	sameLayout(t, "ClusterNetworkPolicy", reflect.TypeFor[v1alpha2.ClusterNetworkPolicy](), reflect.TypeFor[v1beta1.ClusterNetworkPolicy](), map[[2]reflect.Type]bool{})
}

func sameLayout(t *testing.T, path string, a, b reflect.Type, seen map[[2]reflect.Type]bool) {
	t.Helper()
	if a == b || seen[[2]reflect.Type{a, b}] {
		return // a type both versions import (metav1, intstr), or one already compared
	}
	seen[[2]reflect.Type{a, b}] = true
	for _, pkg := range []string{a.PkgPath(), b.PkgPath()} {
		if pkg != "" && pkg != reflect.TypeFor[v1alpha2.Tier]().PkgPath() && pkg != reflect.TypeFor[v1beta1.Tier]().PkgPath() {
			t.Fatalf("%s: %v and %v differ and are not types of the two versions", path, a, b)
		}
	}
	if a.Kind() != b.Kind() || a.Size() != b.Size() || a.Name() != b.Name() {
		t.Fatalf("%s: %v (%s, %d bytes) against %v (%s, %d bytes)", path, a, a.Kind(), a.Size(), b, b.Kind(), b.Size())
	}
	switch a.Kind() {
	case reflect.Struct:
		if a.NumField() != b.NumField() {
			t.Fatalf("%s: %d fields against %d", path, a.NumField(), b.NumField())
		}
		for i := range a.NumField() {
			fa, fb := a.Field(i), b.Field(i)
			if fa.Name != fb.Name || fa.Tag != fb.Tag || fa.Offset != fb.Offset || fa.Anonymous != fb.Anonymous {
				t.Fatalf("%s: field %d: %s %q at %d against %s %q at %d", path, i, fa.Name, fa.Tag, fa.Offset, fb.Name, fb.Tag, fb.Offset)
			}
			sameLayout(t, path+"."+fa.Name, fa.Type, fb.Type, seen)
		}
	case reflect.Pointer, reflect.Slice, reflect.Array:
		if a.Kind() == reflect.Array && a.Len() != b.Len() {
			t.Fatalf("%s: arrays of %d and %d", path, a.Len(), b.Len())
		}
		sameLayout(t, path+"[]", a.Elem(), b.Elem(), seen)
	case reflect.Map:
		sameLayout(t, path+"{key}", a.Key(), b.Key(), seen)
		sameLayout(t, path+"{}", a.Elem(), b.Elem(), seen)
	case reflect.Interface, reflect.Func, reflect.Chan, reflect.UnsafePointer:
		t.Fatalf("%s: %s fields are not compared", path, a.Kind())
	}
}

// TestCNPFromBetaKeepsEveryField fills v1beta1 objects at random and
// checks that their v1alpha2 views, and back, encode to the same JSON.
func TestCNPFromBetaKeepsEveryField(t *testing.T) {
	f := randfill.NewWithSeed(1).NilChance(0.2).NumElements(1, 3)
	for i := range 200 {
		var b v1beta1.ClusterNetworkPolicy
		f.Fill(&b)
		b.ManagedFields = nil // raw JSON that random bytes are not
		b.APIVersion = v1beta1.GroupVersion.String()
		before := mustJSON(t, &b)
		a := CNPFromBeta(&b)
		if a.APIVersion != v1alpha2.GroupVersion.String() || b.APIVersion != v1beta1.GroupVersion.String() {
			t.Fatalf("object %d: apiVersion %q of the view, %q of the original", i, a.APIVersion, b.APIVersion)
		}
		a.APIVersion = b.APIVersion
		if got := mustJSON(t, a); !bytes.Equal(got, before) {
			t.Fatalf("object %d: the v1alpha2 view encodes as\n%s\nthe v1beta1 object as\n%s", i, got, before)
		}
		if got := mustJSON(t, CNPToBeta(a)); !bytes.Equal(got, before) {
			t.Fatalf("object %d: back to v1beta1 it encodes as\n%s\nnot\n%s", i, got, before)
		}
	}
	if CNPFromBeta(nil) != nil || CNPToBeta(nil) != nil {
		t.Error("nil is not kept nil")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
