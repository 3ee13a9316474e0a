package testutil

import (
	"slices"
	"testing"
)

func TestSeedsOfARound(t *testing.T) {
	for _, c := range []struct {
		round string
		want  []int64
	}{
		{"", []int64{1, 2, 3}},
		{"0", []int64{1, 2, 3}},
		{"2", []int64{7, 8, 9}},
	} {
		t.Setenv(SeedRoundEnv, c.round)
		if got := slices.Collect(Seeds(t, 3)); !slices.Equal(got, c.want) {
			t.Errorf("round %q: seeds %v, want %v", c.round, got, c.want)
		}
	}
}
