package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Run measures every configured size, then the data path, and evaluates
// the targets. A part that fails is noted in the results and the run goes
// on, so a report is always written; the error says what failed.
func Run(ctx context.Context, cfg Config, j *Janitor) (*Results, error) {
	res := &Results{Machine: describeMachine(), Seed: cfg.Seed, Quick: cfg.Quick, Started: time.Now()}
	var errs []error
	fail := func(what string, err error) {
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
		res.Notes = append(res.Notes, fmt.Sprintf("error: %s: %v", what, err))
		cfg.logf("error: %s: %v", what, err)
	}
	for _, size := range cfg.Sizes {
		if ctx.Err() != nil {
			break
		}
		sr, err := controlPlane(ctx, j, cfg, size)
		if err != nil {
			fail("control plane "+size.Name, err)
			continue
		}
		cfg.logf("%s: agent memory", size.Name)
		if sr.Memory, err = measureMemory(j, cfg, size); err != nil {
			fail("memory "+size.Name, err)
		}
		res.Sizes = append(res.Sizes, sr)
	}
	if cfg.DataPath && ctx.Err() == nil {
		dp, err := dataPath(ctx, j, cfg)
		if err != nil {
			fail("data path", err)
		}
		res.DataPath = dp
	}
	if cfg.NewPod && ctx.Err() == nil {
		cfg.logf("new pods: address to reachable")
		np, err := newPodReach(ctx, j, cfg)
		if err != nil {
			fail("new pods", err)
		}
		res.NewPod = np
	}
	if cfg.FQDN && ctx.Err() == nil {
		cfg.logf("domainNames: the first-connection race")
		fr, err := fqdnRace(ctx, j, cfg)
		if err != nil {
			fail("fqdn race", err)
		}
		res.FQDN = fr
	}
	if len(cfg.RealPeer) > 0 && ctx.Err() == nil {
		rp, err := realPeer(ctx, j, cfg, cfg.RealPeer)
		if err != nil {
			fail("real kube-router", err)
		}
		res.RealPeer = rp
	}
	if cfg.TKE && ctx.Err() == nil {
		tke, err := tkeDataPath(ctx, j, cfg)
		if err != nil {
			fail("tke data path", err)
		}
		res.TKE = tke
	}
	res.Machine.LoadEnd = loadavg()
	res.Seconds = time.Since(res.Started).Seconds()
	res.Targets = evaluate(res)
	return res, errors.Join(append(errs, ctx.Err())...)
}

// Write puts results.json and results.md in dir.
func Write(dir string, res *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(Markdown(res)), 0o644)
}
