package scenario

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Verdict is what happened to a probed pair, or what should.
type Verdict string

// The verdicts. Want is never Skipped.
const (
	Allowed Verdict = "allowed"
	Denied  Verdict = "denied"
	Skipped Verdict = "skipped" // not run, e.g. SCTP where the kernel has no SCTP sockets and raw ones are not allowed
	Errored Verdict = "error"   // the lab could not run the probe: not a denial, and a failure
	// Mixed is a Service probe whose repeated attempts did not all end
	// the same: some connected and some did not. Never expected, so always
	// a mismatch.
	Mixed Verdict = "mixed"
)

// Details the lab gives with a denial. Other text is allowed (with Skipped,
// say why).
const (
	DetailTimeout = "timeout"      // no answer: the packet was dropped
	DetailReset   = "reset"        // TCP reset, SCTP ABORT, ICMP port unreachable
	DetailICMP    = "icmp"         // an ICMP error came back
	DetailNoPort  = "no such port" // a named port the destination does not declare: nothing was sent
	// DetailNoAddress: the name server gave the name no address of the
	// probe's family; nothing was sent.
	DetailNoAddress = "no address"
)

// Outcome is a verdict with an optional detail.
type Outcome struct {
	Verdict Verdict `json:"verdict"`
	Detail  string  `json:"detail,omitempty"`
}

func (o Outcome) String() string {
	v := string(o.Verdict)
	if v == "" {
		v = "nothing"
	}
	if o.Detail != "" {
		return v + " (" + o.Detail + ")"
	}
	return v
}

// Status is how a result counts in the summary.
type Status string

// The statuses.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Result is one probed pair.
type Result struct {
	From Endpoint `json:"from"`
	To   Endpoint `json:"to"`
	Want Outcome  `json:"want"`
	Got  Outcome  `json:"got"`
	Line int      `json:"line"`           // the expect line that decided Want
	Port int32    `json:"port,omitempty"` // the port probed, a named port resolved; 0 if it did not resolve
}

// Status compares Got with Want. A pair the lab did not measure (no Got),
// or a Result with no Want, fails rather than passes. When Want asks for a timeout (denied: drop), a
// reset or ICMP error fails; a named port the destination lacks passes,
// since nothing was sent.
func (r Result) Status() Status {
	switch {
	case r.Got.Verdict == Skipped:
		return Skip
	case r.Want.Verdict == "", r.Got.Verdict != r.Want.Verdict:
		return Fail
	case r.Want.Verdict == Denied && r.Want.Detail == DetailTimeout &&
		r.Got.Detail != DetailTimeout && r.Got.Detail != DetailNoPort:
		return Fail
	}
	return Pass
}

// MarshalJSON adds "status" to the fields.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	return json.Marshal(struct {
		plain
		Status Status `json:"status"`
	}{plain(r), r.Status()})
}

// ProbeReport is the results of one probe in one family.
type ProbeReport struct {
	Step     int      `json:"step"` // 1-based, as Step.Number
	Line     int      `json:"line"` // the probe's line
	Note     string   `json:"note,omitempty"`
	Port     string   `json:"port"` // a number or a port name
	Protocol string   `json:"protocol"`
	Family   string   `json:"family"`
	Results  []Result `json:"results"`
}

// NewProbeReport starts the report of st's probe in family f.
func NewProbeReport(st *Step, f Family) ProbeReport {
	return ProbeReport{
		Step:     st.Number,
		Line:     st.Probe.Line,
		Note:     st.Note,
		Port:     st.Probe.Port.String(),
		Protocol: string(st.Probe.Protocol),
		Family:   string(f),
	}
}

// Report is the results of one scenario. Errors are problems in the
// scenario (each counts as one failure).
type Report struct {
	Scenario string        `json:"scenario"`
	File     string        `json:"file"`
	Probes   []ProbeReport `json:"probes"`
	Errors   []string      `json:"errors"`
}

// ErrorReports turns what Load or LoadAll returned as an error into one
// report per file, each failing with its errors, so that a scenario that
// does not load still counts in the summary and the JSON. Scenario is empty
// in them: the file did not say.
func ErrorReports(err error) []Report {
	var out []Report
	index := map[string]int{}
	for _, e := range flatten(err) {
		file := ""
		var se *Error
		if errors.As(e, &se) {
			file = se.File
		}
		i, ok := index[file]
		if !ok {
			i = len(out)
			index[file] = i
			out = append(out, Report{File: file})
		}
		out[i].Errors = append(out[i].Errors, e.Error())
	}
	return out
}

// flatten undoes errors.Join, however nested.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// MarshalJSON writes empty lists as [] and adds "summary".
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	p := plain(r)
	p.Probes = make([]ProbeReport, len(r.Probes))
	for i, pr := range r.Probes {
		if pr.Results == nil {
			pr.Results = []Result{}
		}
		p.Probes[i] = pr
	}
	if p.Errors == nil {
		p.Errors = []string{}
	}
	return json.Marshal(struct {
		plain
		Summary Summary `json:"summary"`
	}{p, r.Summary()})
}

// Summary counts probed pairs; a scenario error counts as a failure.
type Summary struct {
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
}

func (s Summary) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", s.Passed, s.Failed, s.Skipped)
}

// OK reports whether nothing failed: the runner's exit status is 1 if not.
func (s Summary) OK() bool { return s.Failed == 0 }

// Summary counts r's results and errors.
func (r Report) Summary() Summary {
	s := Summary{Failed: len(r.Errors)}
	for _, pr := range r.Probes {
		for _, res := range pr.Results {
			switch res.Status() {
			case Pass:
				s.Passed++
			case Fail:
				s.Failed++
			case Skip:
				s.Skipped++
			}
		}
	}
	return s
}

// Summarize adds up the summaries of reports.
func Summarize(reports ...Report) Summary {
	var s Summary
	for _, r := range reports {
		rs := r.Summary()
		s.Passed += rs.Passed
		s.Failed += rs.Failed
		s.Skipped += rs.Skipped
	}
	return s
}

// WriteSummary writes the one line "N passed, N failed, N skipped".
func WriteSummary(w io.Writer, reports ...Report) error {
	_, err := fmt.Fprintln(w, Summarize(reports...))
	return err
}

// WriteJSON writes reports as an indented JSON array (--output json).
func WriteJSON(w io.Writer, reports []Report) error {
	if reports == nil {
		reports = []Report{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(reports)
}

// Output formats of a runner (--output).
const (
	OutputText = "text"
	OutputJSON = "json"
)

// WriteOutput writes a runner's reports in format. Text goes to stdout,
// summary line included. JSON puts only the JSON document on stdout, so
// that it can be piped to a parser as it is, and the summary line on
// stderr for the person watching.
func WriteOutput(stdout, stderr io.Writer, format string, reports []Report) error {
	switch format {
	case OutputText:
		return WriteText(stdout, reports)
	case OutputJSON:
		if err := WriteJSON(stdout, reports); err != nil {
			return err
		}
		return WriteSummary(stderr, reports...)
	}
	return fmt.Errorf("output format %q: want %s or %s", format, OutputText, OutputJSON)
}

// WriteText writes every report (its matrices and errors, then its own
// summary) and ends with the overall summary line.
func WriteText(w io.Writer, reports []Report) error {
	for _, r := range reports {
		name, heading := r.Scenario, r.Scenario+" ("+r.File+")"
		if name == "" {
			name, heading = r.File, r.File
		}
		if _, err := fmt.Fprintf(w, "=== %s\n", heading); err != nil {
			return err
		}
		for _, pr := range r.Probes {
			if err := WriteMatrix(w, pr); err != nil {
				return err
			}
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
		}
		for _, e := range r.Errors {
			if _, err := fmt.Fprintf(w, "error: %s\n", e); err != nil {
				return err
			}
		}
		if _, err := fmt.Fprintf(w, "--- %s: %s\n\n", name, r.Summary()); err != nil {
			return err
		}
	}
	return WriteSummary(w, reports...)
}

// WriteMatrix writes one probe's results as a matrix, rows from and
// columns to: "." allowed, "X" denied, "M" mixed (a Service probe whose
// attempts differed), "?" skipped or not measured, "E" the lab failed to probe, "-" not probed (such as an endpoint and itself). A cell that is not what
// was expected gets a "!", and the mismatches are listed under the matrix.
func WriteMatrix(w io.Writer, pr ProbeReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "step %d (line %d): port %s/%s", pr.Step, pr.Line, pr.Port, pr.Protocol)
	if pr.Family != "" {
		fmt.Fprintf(&b, " %s", pr.Family)
	}
	if note := strings.Join(strings.Fields(pr.Note), " "); note != "" {
		fmt.Fprintf(&b, ": %s", note)
	}
	b.WriteString("\n")

	// Rows and columns share one order, that in which endpoints first
	// appear in the results, so that x/a is in the same place in both.
	var all []Endpoint
	isFrom, isTo := map[Endpoint]bool{}, map[Endpoint]bool{}
	cells := map[Pair]Result{}
	for _, r := range pr.Results {
		for _, e := range []Endpoint{r.From, r.To} {
			if !slices.Contains(all, e) {
				all = append(all, e)
			}
		}
		isFrom[r.From], isTo[r.To] = true, true
		cells[Pair{r.From, r.To}] = r
	}
	var rows, cols []Endpoint
	for _, e := range all {
		if isFrom[e] {
			rows = append(rows, e)
		}
		if isTo[e] {
			cols = append(cols, e)
		}
	}
	rowW := 0
	for _, r := range rows {
		rowW = max(rowW, len(r.String()))
	}
	line := func(first string, cells []string) {
		s := pad(first, rowW)
		for i, c := range cells {
			s += "  " + pad(c, max(len(cols[i].String()), 2))
		}
		b.WriteString(strings.TrimRight(s, " ") + "\n")
	}
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = c.String()
	}
	line("", header)
	var failed []Result
	skipped := false
	for _, r := range rows {
		syms := make([]string, len(cols))
		for i, c := range cols {
			res, ok := cells[Pair{r, c}]
			if !ok {
				syms[i] = "-"
				continue
			}
			syms[i] = symbol(res.Got)
			switch res.Status() {
			case Fail:
				syms[i] += "!"
				failed = append(failed, res)
			case Skip:
				skipped = true
			}
		}
		line(r.String(), syms)
	}
	if len(failed) > 0 || skipped {
		mixed := ""
		if slices.ContainsFunc(pr.Results, func(r Result) bool { return r.Got.Verdict == Mixed }) {
			mixed = "M mixed  "
		}
		b.WriteString(". allowed  X denied  " + mixed + "? skipped  E lab error  - not probed  ! not as expected\n")
	}
	if len(failed) > 0 {
		fmt.Fprintf(&b, "%d not as expected:\n", len(failed))
		for _, r := range failed {
			fmt.Fprintf(&b, "  %s -> %s: want %s (line %d), got %s\n", r.From, r.To, r.Want, r.Line, r.Got)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func symbol(o Outcome) string {
	switch o.Verdict {
	case Allowed:
		return "."
	case Denied:
		return "X"
	case Errored:
		return "E"
	case Mixed:
		return "M"
	}
	return "?"
}

func pad(s string, w int) string {
	if len(s) >= w {
		return s
	}
	return s + strings.Repeat(" ", w-len(s))
}
