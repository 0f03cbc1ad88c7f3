package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// buildTimeout bounds the build of the sibyl binary.
const buildTimeout = 10 * time.Minute

// buildSibyl builds ./cmd/sibyl of the repository at repo into dir/bin and returns the
// binary's path.
func buildSibyl(ctx context.Context, procs *procSet, goBin, repo, dir string) (string, error) {
	root, err := filepath.Abs(repo)
	if err != nil {
		return "", fmt.Errorf("--repo %s: %w", repo, err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", bin, err)
	}
	out := filepath.Join(bin, "sibyl")
	args := []string{goBin, "build", "-o", out, "./cmd/sibyl"}
	if err := procs.run(ctx, "go build", args, root, filepath.Join(dir, "build.log"), buildTimeout); err != nil {
		return "", fmt.Errorf("build sibyl in %s: %w", root, err)
	}
	return out, nil
}
