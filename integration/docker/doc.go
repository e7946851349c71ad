// Package docker holds the end-to-end tests of the docker cluster
// (docker/compose.yaml with docker/compose.sim.yaml): two simulated Asterisk
// servers, each with its doorman sidecar in its network namespace, and Redis.
// The test drives the cluster from the host with docker-compose, sends SIP
// from phone and attacker containers (cmd/probe), runs AGI() inside a
// server's namespace, and asks each agent's HTTP API and each simulator's
// control API what happened.
//
// It runs only when DOORMAN_DOCKER=1 (set by `task integration:docker`, which
// builds the images first), as root, with docker and docker-compose.
package docker
