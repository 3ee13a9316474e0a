package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

// Value is one YAML node as YAML 1.2 reads it, aliases expanded, with the
// line it starts on so that every later error can point into the file.
type Value struct {
	Line   int
	Kind   yaml.Kind // ScalarNode, MappingNode or SequenceNode
	Scalar any       // decoded scalar: string, int, uint64, float64, bool or nil
	Text   string    // scalar source text
	Fields []Entry   // mapping entries in file order
	Items  []*Value  // sequence items
}

// Entry is one key of a mapping, with the line of the key.
type Entry struct {
	Key  string
	Line int
	Val  *Value
}

// Limits that keep hostile input (alias bombs, deep nesting) cheap; a
// scenario is a few hundred lines.
const (
	maxFileSize      = 1 << 20
	maxExpandedNodes = 100_000
	maxDepth         = 1000
)

// parseYAML reads one YAML document into a value tree, and checks that
// sigs.k8s.io/yaml (YAML 1.1) reads it the same, as docs/scenarios.md requires.
// A nil value means an empty document.
func parseYAML(data []byte) (*Value, error) {
	if len(data) > maxFileSize {
		return nil, &Error{Err: fmt.Errorf("file larger than %d bytes", maxFileSize)}
	}
	var doc yaml.Node
	if err := safeYAML(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	c := converter{budget: maxExpandedNodes, expanding: map[*yaml.Node]bool{}}
	v, err := c.convert(doc.Content[0], 0)
	if err != nil {
		return nil, err
	}
	if err := sameIn11(data, v); err != nil {
		return nil, err
	}
	return v, nil
}

// errMultiDoc tells a second document apart from a syntax error.
var errMultiDoc = errors.New("the file holds more than one YAML document")

// safeYAML parses data with yaml.v3. A parser panic on malformed input
// becomes an error: the loader must never panic, whatever the file holds.
func safeYAML(data []byte, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Err: fmt.Errorf("YAML parser failed: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return yamlError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return &Error{Line: next.Line, Err: errMultiDoc}
	} else if !errors.Is(err, io.EOF) {
		return yamlError(err)
	}
	return nil
}

// yamlError turns "yaml: line 3: ..." into an Error with that line.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, convErr := strconv.Atoi(num); convErr == nil {
				if parserProblems[after] {
					n++
				}
				return &Error{Line: n, Err: errors.New(after)}
			}
		}
	}
	return &Error{Err: errors.New(msg)}
}

// parserProblems are the messages of yaml.v3's parser (as opposed to its
// scanner) errors, whose line it reports counting from 0 (parser.fail in
// decode.go adds 1 for scanner errors only).
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

type converter struct {
	budget    int
	expanding map[*yaml.Node]bool // anchors being expanded, to catch cycles
}

func (c *converter) Errorf(n *yaml.Node, format string, a ...any) error {
	return &Error{Line: n.Line, Err: fmt.Errorf(format, a...)}
}

func (c *converter) convert(n *yaml.Node, depth int) (*Value, error) {
	if c.budget--; c.budget < 0 {
		return nil, c.Errorf(n, "document too large: aliases expand to more than %d nodes", maxExpandedNodes)
	}
	if depth > maxDepth {
		return nil, c.Errorf(n, "nested more than %d levels deep", maxDepth)
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil || c.expanding[n.Alias] {
			return nil, c.Errorf(n, "alias *%s refers to itself", n.Value)
		}
		c.expanding[n.Alias] = true
		defer delete(c.expanding, n.Alias)
		v, err := c.convert(n.Alias, depth+1)
		if err != nil {
			return nil, err
		}
		v.Line = n.Line // point at the use, not the anchor
		return v, nil
	case yaml.ScalarNode:
		s, err := c.scalar(n)
		if err != nil {
			return nil, err
		}
		return &Value{Line: n.Line, Kind: yaml.ScalarNode, Scalar: s, Text: n.Value}, nil
	case yaml.SequenceNode:
		v := &Value{Line: n.Line, Kind: yaml.SequenceNode}
		for _, item := range n.Content {
			iv, err := c.convert(item, depth+1)
			if err != nil {
				return nil, err
			}
			v.Items = append(v.Items, iv)
		}
		return v, nil
	case yaml.MappingNode:
		v := &Value{Line: n.Line, Kind: yaml.MappingNode}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn := n.Content[i]
			key, err := c.key(kn)
			if err != nil {
				return nil, err
			}
			if first, dup := seen[key]; dup {
				return nil, c.Errorf(kn, "duplicate key %q (first at line %d)", key, first)
			}
			seen[key] = kn.Line
			val, err := c.convert(n.Content[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			v.Fields = append(v.Fields, Entry{Key: key, Line: kn.Line, Val: val})
		}
		return v, nil
	}
	return nil, c.Errorf(n, "unexpected YAML node")
}

func (c *converter) scalar(n *yaml.Node) (any, error) {
	if n.Style&yaml.TaggedStyle != 0 {
		switch n.Tag {
		case "!!str", "!!int", "!!float", "!!bool", "!!null":
		default:
			return nil, c.Errorf(n, "unsupported YAML tag %s", n.Tag)
		}
	}
	var s any
	if err := n.Decode(&s); err != nil {
		return nil, c.Errorf(n, "%v", err)
	}
	switch x := s.(type) {
	case nil, string, bool, int, int64, uint64:
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, c.Errorf(n, "%s is not a number JSON can hold", n.Value)
		}
	default:
		// Timestamps, binary: Kubernetes objects hold them as strings.
		s = n.Value
	}
	return s, nil
}

// key turns a mapping key into the string sigs.k8s.io/yaml would make of it
// for JSON, so that both readings can be compared key by key.
func (c *converter) key(n *yaml.Node) (string, error) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return "", c.Errorf(n, "mapping keys must be scalars")
	}
	s, err := c.scalar(n)
	if err != nil {
		return "", err
	}
	switch k := s.(type) {
	case string:
		return k, nil
	case bool:
		return strconv.FormatBool(k), nil
	case int:
		return strconv.Itoa(k), nil
	case int64:
		return strconv.FormatInt(k, 10), nil
	case uint64:
		return strconv.FormatUint(k, 10), nil
	case float64:
		return strconv.FormatFloat(k, 'g', -1, 32), nil
	}
	return "", c.Errorf(n, "mapping key %q is not a string", n.Value)
}

// toAny returns the value as encoding/json would hold it.
func (v *Value) toAny() any {
	if v == nil {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(v.Fields))
		for _, f := range v.Fields {
			m[f.Key] = f.Val.toAny()
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, len(v.Items))
		for i, item := range v.Items {
			l[i] = item.toAny()
		}
		return l
	}
	return v.Scalar
}

// Get returns the value of key in a mapping, and the line of the key.
func (v *Value) Get(key string) (*Value, int, bool) {
	if v == nil || v.Kind != yaml.MappingNode {
		return nil, 0, false
	}
	for _, f := range v.Fields {
		if f.Key == key {
			return f.Val, f.Line, true
		}
	}
	return nil, 0, false
}

// Lookup follows a path of keys (string) and indices (int) as far as it
// can, and returns the line of the deepest node reached.
func (v *Value) Lookup(path []any) int {
	if v == nil {
		return 0
	}
	line := v.Line
	for _, p := range path {
		switch p := p.(type) {
		case string:
			next, keyLine, ok := v.Get(p)
			if !ok {
				return line
			}
			v, line = next, keyLine
		case int:
			if v.Kind != yaml.SequenceNode || p < 0 || p >= len(v.Items) {
				return line
			}
			v = v.Items[p]
			line = v.Line
		}
	}
	return line
}

// sameIn11 checks that sigs.k8s.io/yaml, which reads YAML 1.1, reads data
// as v (the YAML 1.2 reading). They differ on plain scalars such as y, no,
// on and off (booleans in 1.1 only) and on merge keys (<<, 1.1 only).
func sameIn11(data []byte, v *Value) error {
	j, err := safeYAMLToJSON(data)
	if err != nil {
		return &Error{Err: fmt.Errorf("sigs.k8s.io/yaml (YAML 1.1) cannot read the file: %v", err)}
	}
	var in11 any
	if err := json.Unmarshal(j, &in11); err != nil {
		return &Error{Err: fmt.Errorf("sigs.k8s.io/yaml (YAML 1.1) cannot read the file: %v", err)}
	}
	b, err := json.Marshal(v.toAny())
	if err != nil {
		return &Error{Line: v.Line, Err: err}
	}
	var in12 any
	if err := json.Unmarshal(b, &in12); err != nil {
		return &Error{Line: v.Line, Err: err}
	}
	path, key, ok := firstDiff(in12, in11, nil)
	if ok {
		return nil
	}
	if key != "" {
		line := v.Lookup(append(path, key))
		if key == "<<" {
			return &Error{Line: line, Err: errors.New("merge keys (<<) exist only in YAML 1.1; write the entries out")}
		}
		return &Error{Line: line, Err: fmt.Errorf("key %s reads differently in YAML 1.1 and YAML 1.2; quote it", key)}
	}
	a, _ := json.Marshal(walk(in11, path))
	b, _ = json.Marshal(walk(in12, path))
	return &Error{Line: v.Lookup(path), Err: fmt.Errorf("%s reads as %s in YAML 1.1 but as %s in YAML 1.2; quote it", v.textAt(path), a, b)}
}

func safeYAMLToJSON(data []byte) (j []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parser failed: %v", r)
		}
	}()
	return sigsyaml.YAMLToJSON(data)
}

// firstDiff compares a (1.2) with b (1.1). When they differ it returns the
// path to the first difference, and the key if a mapping key is what
// differs (a key of a that b lacks).
func firstDiff(a, b any, path []any) ([]any, string, bool) {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok {
			return path, "", false
		}
		keys := make([]string, 0, len(a))
		for k := range a {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if _, ok := bm[k]; !ok {
				return path, k, false
			}
		}
		if len(bm) != len(a) {
			return path, "", false
		}
		for _, k := range keys {
			if p, key, ok := firstDiff(a[k], bm[k], append(slices.Clip(path), k)); !ok {
				return p, key, false
			}
		}
		return nil, "", true
	case []any:
		bl, ok := b.([]any)
		if !ok || len(bl) != len(a) {
			return path, "", false
		}
		for i := range a {
			if p, key, ok := firstDiff(a[i], bl[i], append(slices.Clip(path), i)); !ok {
				return p, key, false
			}
		}
		return nil, "", true
	}
	if reflect.DeepEqual(a, b) {
		return nil, "", true
	}
	return path, "", false
}

func walk(x any, path []any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, _ := x.(map[string]any)
			x = m[p]
		case int:
			l, _ := x.([]any)
			if p >= len(l) {
				return nil
			}
			x = l[p]
		}
	}
	return x
}

// textAt returns the source text of the scalar at path, or "the value".
func (v *Value) textAt(path []any) string {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			v, _, _ = v.Get(p)
		case int:
			if v == nil || p >= len(v.Items) {
				v = nil
			} else {
				v = v.Items[p]
			}
		}
		if v == nil {
			return "the value"
		}
	}
	if v.Kind == yaml.ScalarNode {
		return strconv.Quote(v.Text)
	}
	return "the value"
}
