module github.com/asterisksupport/doorman

go 1.26.0

require (
	github.com/CyCoreSystems/ari/v6 v6.0.0-20251024161400-681c62bc07e7
	github.com/gorilla/websocket v1.5.3
	github.com/zaf/agi v0.0.0-20220109201550-cdecf9a1b285
)

require (
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/oklog/ulid v1.3.1 // indirect
	github.com/rotisserie/eris v0.5.4 // indirect
	golang.org/x/exp v0.0.0-20251023183803-a4bb9ffd2546 // indirect
	golang.org/x/net v0.42.0 // indirect
)
