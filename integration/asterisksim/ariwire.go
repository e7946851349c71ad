package asterisksim

import (
	"net/http"

	"github.com/asterisksupport/doorman/integration/asterisksim/ari"
)

// initARI enables the ARI server of package ari on HTTPAddr.
func (s *Sim) initARI() {
	s.newHTTPHandler = func() http.Handler {
		return ari.NewHandler(s.core, s.cfg.ARIUsers, s.log.With("component", "ari"))
	}
}
