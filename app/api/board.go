package api

import (
	_ "embed"
	"net/http"
)

//go:embed board.html
var boardPage []byte

// board serves the live BLF board: a static page that polls /api/lamps.
func (s *Server) board(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	_, _ = w.Write(boardPage)
}
