package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/asterisksupport/doorman/app/config"
)

// TestExampleConfig keeps the documented example honest: it must load with
// its secret files present, and `config print` must not show the secrets.
func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("doorman.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := string(b)
	for _, name := range []string{"ami.secret", "ari.password", "redis.password", "api.token"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret-"+name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		text = strings.ReplaceAll(text, "/etc/doorman/"+name, p)
	}
	text = strings.ReplaceAll(text, "/var/lib/doorman/state.db", filepath.Join(dir, "state.db"))
	path := filepath.Join(dir, "doorman.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("example config does not load: %v", err)
	}
	if cfg.AMI.Secret != "secret-ami.secret" || cfg.API.Token != "secret-api.token" {
		t.Fatalf("secret files not read: %+v", cfg.AMI)
	}
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"config", "print", "-c", path}, &out, &errb); err != nil {
		t.Fatalf("config print: %v %s", err, errb.String())
	}
	if strings.Contains(out.String(), "secret-") {
		t.Fatalf("config print shows a secret:\n%s", out.String())
	}
}
