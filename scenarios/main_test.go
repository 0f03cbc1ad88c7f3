package scenarios

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sibyl-scenarios-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err := buildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sibylBin = bin
	fmt.Printf("scenarios: port and workload seed %d (set SIBYL_SCENARIO_SEED to replay)\n", seedUsed)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
