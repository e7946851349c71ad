#!/usr/bin/env bash
# Makes random secrets for the docker cluster in docker/secrets/ (or $1),
# keeping any that exist: ami (AMI user doorman), ari (ARI user doorman),
# api-token (doorman's HTTP API). For a real Asterisk put the same ami and ari
# secrets in its manager.conf and ari.conf.
set -euo pipefail
dir=${1:-$(cd "$(dirname "$0")" && pwd)/secrets}
mkdir -p "$dir"
umask 077
for f in ami ari api-token; do
	[ -s "$dir/$f" ] || head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$dir/$f"
done
