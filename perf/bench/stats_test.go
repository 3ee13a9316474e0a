package bench

import (
	"math/rand/v2"
	"testing"
)

func TestMedianCI(t *testing.T) {
	if lo, hi := medianCI([]float64{3, 3, 3, 3}); lo != 3 || hi != 3 {
		t.Errorf("constant rounds: %v to %v, want 3 to 3", lo, hi)
	}
	r := rand.New(rand.NewPCG(7, 8))
	draw := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = r.NormFloat64()
		}
		return v
	}
	lo25, hi25 := medianCI(draw(25))
	lo400, hi400 := medianCI(draw(400))
	if !(lo400 < 0 && 0 < hi400) {
		t.Errorf("400 standard normal draws: %v to %v does not hold their median, 0", lo400, hi400)
	}
	// The median of n standard normal draws has a standard error of
	// about 1.2533/√n: a 95% interval ~0.25 wide at 400.
	if w := hi400 - lo400; w < 0.15 || w > 0.35 {
		t.Errorf("400 draws: interval %v wide, want about 0.25", w)
	}
	if hi400-lo400 >= hi25-lo25 {
		t.Errorf("the interval did not narrow from 25 draws (%v to %v) to 400 (%v to %v)", lo25, hi25, lo400, hi400)
	}
}
