package asterisksim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Stasis: device states persist like astdb's CustomDevstate family, so a
// restart replays them (and they go stale, as on a real Asterisk).

const astdbFile = "astdb.json"

type astdb struct {
	Stasis map[string]string `json:"stasis"`
}

func (c *core) persistLocked() error {
	if c.cfg.StateDir == "" {
		return nil
	}
	b, err := json.MarshalIndent(astdb{Stasis: c.stasis}, "", "  ")
	if err != nil {
		return fmt.Errorf("asterisksim: encode astdb: %w", err)
	}
	if err := os.MkdirAll(c.cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("asterisksim: state dir: %w", err)
	}
	tmp := filepath.Join(c.cfg.StateDir, astdbFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("asterisksim: write astdb: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(c.cfg.StateDir, astdbFile)); err != nil {
		return fmt.Errorf("asterisksim: write astdb: %w", err)
	}
	return nil
}

// loadPersisted reads the persisted Stasis states; a missing file is empty.
func loadPersisted(dir string) (map[string]string, error) {
	if dir == "" {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, astdbFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("asterisksim: read astdb: %w", err)
	}
	var db astdb
	if err := json.Unmarshal(b, &db); err != nil {
		return nil, fmt.Errorf("asterisksim: astdb %s: %w", filepath.Join(dir, astdbFile), err)
	}
	out := map[string]string{}
	for k, v := range db.Stasis {
		if strings.HasPrefix(k, "Stasis:") && ValidDeviceState(v) {
			out[k] = v
		}
	}
	return out, nil
}
