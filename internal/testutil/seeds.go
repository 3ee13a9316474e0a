package testutil

import (
	"iter"
	"os"
	"strconv"
	"testing"
)

// SeedRoundEnv moves every seeded random test to seeds it has not run:
// with NFTPOLICY_SEED_ROUND=k a test of n seeds runs seeds k·n+1 to
// (k+1)·n. Round 0, the default, is what `make test` runs; `make soak`
// runs the rounds after it, so a long run explores new clusters instead of
// repeating the same ones.
const SeedRoundEnv = "NFTPOLICY_SEED_ROUND"

// Seeds yields the n seeds of this round, for a random test to build its
// clusters from. A failure names its seed; run the same round to repeat it.
func Seeds(tb testing.TB, n int64) iter.Seq[int64] {
	tb.Helper()
	round := int64(0)
	if v := os.Getenv(SeedRoundEnv); v != "" {
		r, err := strconv.ParseInt(v, 10, 64)
		if err != nil || r < 0 {
			tb.Fatalf("%s=%q: want a round number, 0 or more", SeedRoundEnv, v)
		}
		round = r
	}
	return func(yield func(int64) bool) {
		for seed := round*n + 1; seed <= (round+1)*n; seed++ {
			if !yield(seed) {
				return
			}
		}
	}
}
