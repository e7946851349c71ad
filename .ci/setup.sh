#!/usr/bin/env bash
# Installs everything doorman's build, demo and tests need on a fresh Debian
# machine with Go: Debian packages (redis, nftables, ipset, iptables, iproute2,
# fail2ban for the side-by-side benchmark) and the task runner. Idempotent.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
	echo "setup: run as root (apt-get, network namespaces, nftables)" >&2
	exit 1
fi

pkgs=(curl redis-server redis-tools nftables ipset iptables iproute2 fail2ban python3-pyinotify procps psmisc)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian may start these on install; the tests start their own instances.
systemctl disable --now redis-server fail2ban >/dev/null 2>&1 || true
pkill -x redis-server >/dev/null 2>&1 || true
pkill -f fail2ban-server >/dev/null 2>&1 || true

export PATH="$PATH:/usr/local/go/bin:/usr/local/bin"
command -v task >/dev/null 2>&1 ||
	GOBIN=/usr/local/bin go install github.com/go-task/task/v3/cmd/task@v3.54.0
command -v staticcheck >/dev/null 2>&1 ||
	GOBIN=/usr/local/bin go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
