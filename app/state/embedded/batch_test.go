package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/asterisksupport/doorman/app/state/embedded"
	"github.com/asterisksupport/doorman/app/state/statetest"
)

var _ statetest.BatchBans = (*embedded.Store)(nil)

// TestBatchBans runs the batch conformance tests in memory and with a file;
// both views are the one store.
func TestBatchBans(t *testing.T) {
	for _, withFile := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "file"}[withFile], func(t *testing.T) {
			statetest.RunBatch(t, func(t *testing.T) (statetest.BatchBans, statetest.BatchBans) {
				path := ""
				if withFile {
					path = filepath.Join(t.TempDir(), "state.db")
				}
				s, err := embedded.Open(path, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Close() })
				return s, s
			})
		})
	}
}
