// Package protowarn hides one harmless start-up warning. doorman links
// ari/v6 (native transport) and ari/v5 (through ari-proxy); both register the
// same gogo/protobuf message names, and gogo prints "proto: duplicate proto
// type registered: ..." through the standard logger from their init
// functions, before main runs, garbling the CLI's output. Importing this
// package first filters exactly those lines and passes everything else on.
//
// It works because Go (1.21+) initialises ready packages in import-path
// order, and this package, needing only "log" and "io", is ready before
// gogo's proto package and sorts before it.
package protowarn

import (
	"bytes"
	"io"
	"log"
	"os"
)

func init() {
	log.SetOutput(filter{os.Stderr})
}

type filter struct{ w io.Writer }

func (f filter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("proto: duplicate proto type registered")) {
		return len(p), nil
	}
	return f.w.Write(p)
}
