// Package ariproxy tests doorman's ari-proxy transport against real parts:
// Debian's nats-server, the ari-proxy v5.3.1 server built from the module
// (one per simulated Asterisk, as deployed), the Asterisk simulator's ARI,
// and Redis for the Busy Lamp Monitor's cross-server test and the
// side-by-side propagation benchmark (native vs ari-proxy).
package ariproxy
