package redisstore_test

import (
	"testing"

	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/app/state/statetest"
)

var _ statetest.BatchBans = (*redisstore.Store)(nil)

func TestBatchBans(t *testing.T) {
	srv := redistest.Start(t)
	statetest.RunBatch(t, func(t *testing.T) (statetest.BatchBans, statetest.BatchBans) {
		cfg := redisstore.Config{Addrs: []string{srv.Addr}, KeyPrefix: "t:" + t.Name() + ":"}
		return open(t, cfg), open(t, cfg)
	})
}
