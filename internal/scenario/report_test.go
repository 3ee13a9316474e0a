package scenario

import (
	"github.com/nftpolicy/nftpolicy/internal/manifest"

	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// measured plays the lab: it plans a probe of a loaded scenario and fills
// in Got from got, keyed by pair; pairs not in got get what was wanted.
func measured(t *testing.T, file string, step int, got map[string]Outcome) (ProbeReport, *Scenario) {
	t.Helper()
	s, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	st := manifest.NewState()
	for _, o := range s.Objects {
		if err := st.Apply(o); err != nil {
			t.Fatal(err)
		}
	}
	for i := range s.Steps[:step-1] {
		for _, o := range s.Steps[i].Apply {
			if err := st.Apply(o.DeepCopyObject()); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range s.Steps[i].Delete {
			if _, err := st.Delete(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	stp := &s.Steps[step-1]
	results, err := stp.Probe.Plan(Endpoints(st, s.Externals))
	if err != nil {
		t.Fatal(err)
	}
	for i := range results {
		r := &results[i]
		if o, ok := got[Pair{r.From, r.To}.String()]; ok {
			r.Got = o
		} else {
			r.Got = r.Want
		}
	}
	pr := NewProbeReport(stp, s.ProbeFamilies(stp.Probe)[0])
	pr.Results = results
	return pr, s
}

func TestWriteMatrix(t *testing.T) {
	tests := []struct {
		name, file string
		step       int
		got        map[string]Outcome
	}{{
		name: "matrix-pass", file: "testdata/examples/01-default-deny-ingress.yaml", step: 3,
	}, {
		name: "matrix-mismatch", file: "testdata/examples/01-default-deny-ingress.yaml", step: 3,
		got: map[string]Outcome{
			"y/a -> x/a": {Verdict: Allowed},
			"x/b -> y/b": {Verdict: Denied, Detail: DetailReset},
		},
	}, {
		name: "matrix-externals", file: "testdata/examples/03-ipblock-except-externals.yaml", step: 2,
		got: map[string]Outcome{
			"external/ext -> y/a": {Verdict: Denied, Detail: DetailTimeout},
			"x/c -> x/a":          {Verdict: Errored, Detail: "no route to pod namespace"},
		},
	}, {
		name: "matrix-skipped", file: "testdata/examples/01-default-deny-ingress.yaml", step: 4,
		got: map[string]Outcome{
			"x/a -> x/b": {Verdict: Skipped, Detail: "no SCTP"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, _ := measured(t, tt.file, tt.step, tt.got)
			var b bytes.Buffer
			if err := WriteMatrix(&b, pr); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, b.Bytes())
		})
	}
}

func TestResultStatus(t *testing.T) {
	allowed, denied := Outcome{Verdict: Allowed}, Outcome{Verdict: Denied}
	drop := Outcome{Verdict: Denied, Detail: DetailTimeout}
	tests := []struct {
		want, got Outcome
		status    Status
	}{
		{allowed, allowed, Pass},
		{allowed, Outcome{Verdict: Denied, Detail: DetailTimeout}, Fail},
		{denied, allowed, Fail},
		{denied, Outcome{Verdict: Denied, Detail: DetailReset}, Pass},
		{denied, Outcome{Verdict: Denied, Detail: DetailICMP}, Pass},
		{drop, Outcome{Verdict: Denied, Detail: DetailTimeout}, Pass},
		{drop, Outcome{Verdict: Denied, Detail: DetailReset}, Fail},
		{drop, Outcome{Verdict: Denied, Detail: DetailICMP}, Fail},
		{drop, Outcome{Verdict: Denied, Detail: DetailNoPort}, Pass},
		{allowed, Outcome{Verdict: Skipped}, Skip},
		{denied, Outcome{}, Fail}, // never measured
		{denied, Outcome{Verdict: Errored}, Fail},
		// A Service probe whose attempts differed fails whatever was expected.
		{allowed, Outcome{Verdict: Mixed, Detail: "3 of 8 attempts connected"}, Fail},
		{denied, Outcome{Verdict: Mixed}, Fail},
		{drop, Outcome{Verdict: Mixed}, Fail},
		{Outcome{}, Outcome{}, Fail}, // a zero Result
	}
	for _, tt := range tests {
		r := Result{Want: tt.want, Got: tt.got}
		if got := r.Status(); got != tt.status {
			t.Errorf("want %s, got %s: status %s, want %s", tt.want, tt.got, got, tt.status)
		}
	}
}

func TestSummary(t *testing.T) {
	pr, s := measured(t, "testdata/examples/01-default-deny-ingress.yaml", 3, map[string]Outcome{
		"y/a -> x/a": {Verdict: Allowed},
		"x/a -> x/b": {Verdict: Skipped},
	})
	reports := []Report{
		{Scenario: s.Name, File: s.File, Probes: []ProbeReport{pr}},
		{File: "broken.yaml", Errors: []string{"broken.yaml:3: bad"}},
	}
	var b bytes.Buffer
	if err := WriteSummary(&b, reports...); err != nil {
		t.Fatal(err)
	}
	// 12 pairs: 10 pass, 1 fails, 1 skipped; the broken scenario fails once.
	if got, want := b.String(), "10 passed, 2 failed, 1 skipped\n"; got != want {
		t.Errorf("WriteSummary = %q, want %q", got, want)
	}
	if Summarize(reports...).OK() {
		t.Error("OK() with failures = true")
	}
	if !Summarize().OK() {
		t.Error("OK() of nothing = false")
	}

	var text bytes.Buffer
	if err := WriteText(&text, reports); err != nil {
		t.Fatal(err)
	}
	golden(t, "text", text.Bytes())
}

func TestWriteJSON(t *testing.T) {
	pr, s := measured(t, "testdata/examples/03-ipblock-except-externals.yaml", 4, map[string]Outcome{
		"external/ext -> x/b": {Verdict: Denied, Detail: DetailTimeout},
	})
	pr.Results[0].Port = 81
	reports := []Report{
		{Scenario: s.Name, File: s.File, Probes: []ProbeReport{pr}},
		{Scenario: "empty", File: "empty.yaml"},
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, reports); err != nil {
		t.Fatal(err)
	}
	golden(t, "report.json", b.Bytes())

	// The JSON reads back (status and summary are derived, so dropped).
	var back []Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back[0].Probes[0].Results[0] != pr.Results[0] {
		t.Errorf("round trip: %+v, want %+v", back[0].Probes[0].Results[0], pr.Results[0])
	}

	b.Reset()
	if err := WriteJSON(&b, nil); err != nil || b.String() != "[]\n" {
		t.Errorf("WriteJSON(nil) = %q, %v", b.String(), err)
	}
}

func TestErrorReports(t *testing.T) {
	_, err := LoadAll("testdata/bad")
	reports := ErrorReports(err)
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(reports) != len(files) {
		t.Fatalf("%d reports for %d bad files", len(reports), len(files))
	}
	for i, r := range reports {
		if r.File != files[i] || len(r.Errors) == 0 || r.Scenario != "" {
			t.Errorf("report %d = %+v, want file %s with errors", i, r, files[i])
		}
	}
	if got := Summarize(reports...); got.Failed < len(files) || got.OK() {
		t.Errorf("summary of load errors = %v", got)
	}
	if ErrorReports(nil) != nil {
		t.Error("ErrorReports(nil) != nil")
	}
}

// TestWriteOutput: JSON output is the JSON document alone on stdout (it
// parses as a whole) with the summary on stderr; text keeps everything on
// stdout.
func TestWriteOutput(t *testing.T) {
	pr, s := measured(t, "testdata/examples/01-default-deny-ingress.yaml", 3, nil)
	reports := []Report{{Scenario: s.Name, File: s.File, Probes: []ProbeReport{pr}}}
	summary := Summarize(reports...).String() + "\n"

	var out, errOut bytes.Buffer
	if err := WriteOutput(&out, &errOut, OutputJSON, reports); err != nil {
		t.Fatal(err)
	}
	var back []Report
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Errorf("stdout is not one JSON document: %v\n%s", err, out.String())
	}
	if len(back) != 1 || back[0].Scenario != s.Name {
		t.Errorf("stdout holds %d reports, want the one of %s", len(back), s.Name)
	}
	if errOut.String() != summary {
		t.Errorf("stderr = %q, want the summary %q", errOut.String(), summary)
	}

	out.Reset()
	errOut.Reset()
	if err := WriteOutput(&out, &errOut, OutputText, reports); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), summary) || errOut.Len() != 0 {
		t.Errorf("text: stdout ends %q, stderr %q; want the summary last on stdout and nothing on stderr", out.String()[max(0, out.Len()-60):], errOut.String())
	}

	if err := WriteOutput(&out, &errOut, "yaml", reports); err == nil {
		t.Error("an unknown format was accepted")
	}
}
