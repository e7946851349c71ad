package redisstore_test

import (
	"testing"

	"github.com/asterisksupport/doorman/app/state"
	"github.com/asterisksupport/doorman/app/state/redisstore"
	"github.com/asterisksupport/doorman/app/state/redistest"
	"github.com/asterisksupport/doorman/app/state/statetest"
)

// TestRedisCluster runs the suite against a three-master Redis Cluster:
// the hash tag keeps every script's keys in one slot, and feeds published on
// one node reach subscribers on any node.
func TestRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	statetest.Run(t, func(t *testing.T) state.Store {
		return open(t, redisstore.Config{Addrs: c.Addrs(), KeyPrefix: t.Name() + ":"})
	})
}
