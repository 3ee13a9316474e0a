package bench

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

func TestTmpBreakdown(t *testing.T) {
	c := gen.Generate(gen.L, 1)
	m, _ := c.Model()
	e := compile.NewEngine(m, gen.NodeName(0))
	rs := e.Ruleset()
	by := map[string][2]int{}
	for name, s := range rs.Sets {
		k := name
		if i := strings.IndexAny(name[1:], "0123456789"); i > 0 {
			k = name[:i+1]
		}
		v := by[k]
		v[0]++
		v[1] += len(s.Elements)
		by[k] = v
	}
	keys := []string{}
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("%-40s sets %5d elems %7d\n", k, by[k][0], by[k][1])
	}
	fmt.Println("chains", len(rs.Chains))
}
