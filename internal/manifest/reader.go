package manifest

import (
	"fmt"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Reader reads Values and collects errors that point into the file: its
// file, the line of the value, and the step being read. The cluster loader
// uses it, and so does internal/scenario for the probes of a step.
type Reader struct {
	File string
	Step int // the step being read, for errors; 0 outside steps
	Errs []error
}

// Errorf records an error at line.
func (r *Reader) Errorf(line int, format string, a ...any) {
	r.Errs = append(r.Errs, &Error{File: r.File, Line: line, Step: r.Step, Err: fmt.Errorf(format, a...)})
}

// Str reads a scalar as a string; a number keeps its source text.
func (r *Reader) Str(v *Value, what string) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		r.Errorf(v.Line, "%s must be a string", what)
		return "", false
	}
	switch s := v.Scalar.(type) {
	case nil:
		return "", true
	case string:
		return s, true
	}
	return v.Text, true
}

// OptString reads key of mapping m as a string, if present.
func (r *Reader) OptString(m *Value, key string) (string, int, bool) {
	v, line, ok := m.Get(key)
	if !ok {
		return "", 0, false
	}
	s, ok := r.Str(v, key)
	return s, line, ok
}

// List reads a sequence. With single, a lone scalar or mapping stands for a
// list of one, as in `from: x/a`.
func (r *Reader) List(v *Value, what string, single bool) []*Value {
	switch {
	case v.Kind == yaml.SequenceNode:
		return v.Items
	case v.Kind == yaml.ScalarNode && v.Scalar == nil:
		return nil
	case single:
		return []*Value{v}
	}
	r.Errorf(v.Line, "%s must be a list", what)
	return nil
}

// Fields checks that v is a mapping with only known keys, and returns
// its entries by key.
func (r *Reader) Fields(v *Value, what string, known ...string) map[string]*Value {
	if v.Kind != yaml.MappingNode {
		r.Errorf(v.Line, "%s must be a mapping", what)
		return nil
	}
	out := map[string]*Value{}
	for _, f := range v.Fields {
		if !slices.Contains(known, f.Key) {
			r.Errorf(f.Line, "unknown key %q in %s (known: %s)", f.Key, what, strings.Join(known, ", "))
			continue
		}
		out[f.Key] = f.Val
	}
	return out
}
