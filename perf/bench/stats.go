package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Dist summarises repeated measurements of one thing. Durations are in
// milliseconds so the JSON reads without conversion.
type Dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// DistOf summarises durations.
func DistOf(ds []time.Duration) Dist {
	v := make([]float64, len(ds))
	for i, d := range ds {
		v[i] = ms(d)
	}
	return DistOfFloats(v)
}

// DistOfFloats summarises plain numbers (bytes, counts, rates).
func DistOfFloats(v []float64) Dist {
	if len(v) == 0 {
		return Dist{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return Dist{N: len(s), Min: s[0], P50: quantile(s, 0.5), P99: quantile(s, 0.99), Max: s[len(s)-1], Mean: sum / float64(len(s))}
}

// middleHalf is the median of v and the quartiles that bound its middle
// half: how far one round's ratio strays from another's.
func middleHalf(v []float64) (p50, p25, p75 float64) {
	s := slices.Clone(v)
	slices.Sort(s)
	return quantile(s, 0.5), quantile(s, 0.25), quantile(s, 0.75)
}

// medianCI is a 95% interval for the median of v: the 2.5th and 97.5th
// percentiles of the medians of 2,000 resamples of v (with replacement,
// from a fixed seed, so a run's report is the same each time it is
// written). The middle half says how far rounds stray from each other;
// this says how well their median is known, which is what a target on
// the median needs.
func medianCI(v []float64) (lo, hi float64) {
	if len(v) == 0 {
		return 0, 0
	}
	r := rand.New(rand.NewPCG(1, 2))
	const resamples = 2000
	medians := make([]float64, resamples)
	s := make([]float64, len(v))
	for i := range medians {
		for j := range s {
			s[j] = v[r.IntN(len(v))]
		}
		slices.Sort(s)
		medians[i] = quantile(s, 0.5)
	}
	slices.Sort(medians)
	return quantile(medians, 0.025), quantile(medians, 0.975)
}

// quantile of sorted s, by linear interpolation between closest ranks. With
// fewer than 100 samples p99 lies between the two largest: the report says
// how many samples each figure has.
func quantile(s []float64, q float64) float64 {
	if len(s) == 1 {
		return s[0]
	}
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// ratio is a/b, 0 when b is 0 (not measured).
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
