#!/usr/bin/env bash
# docker-compose for the doorman cluster, with the right files and secrets:
#   docker/compose.sh up -d          # the simulator in place of Asterisk
#   ASTERISK_IMAGE=my/asterisk:22 docker/compose.sh up -d   # a real Asterisk
#   docker/compose.sh ps | logs -f doorman-a | down
# Environment: ASTERISK_IMAGE (unset: the simulator), COMPOSE_PROJECT_NAME
# (default doorman), DOORMAN_SECRETS (default docker/secrets),
# DOORMAN_CONFIG_A/B (default docker/config/doorman-a/b.yaml).
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-doorman}
export DOORMAN_SECRETS=${DOORMAN_SECRETS:-$dir/secrets}
files=(-f "$dir/compose.yaml")
if [ -z "${ASTERISK_IMAGE:-}" ]; then
	export ASTERISK_IMAGE=doorman/asterisk-sim:local
	files+=(-f "$dir/compose.sim.yaml")
	# The simulator takes the users doorman logs in with on its command line.
	secret() { cat "$DOORMAN_SECRETS/$1" 2>/dev/null || echo "missing-$1-run-task-docker-secrets"; }
	export DOORMAN_AMI_SECRET=${DOORMAN_AMI_SECRET:-$(secret ami)}
	export DOORMAN_ARI_PASSWORD=${DOORMAN_ARI_PASSWORD:-$(secret ari)}
fi
if command -v docker-compose >/dev/null; then
	exec docker-compose "${files[@]}" "$@"
fi
exec docker compose "${files[@]}" "$@"
