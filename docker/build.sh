#!/usr/bin/env bash
# Builds every image the docker cluster and its tests use, locally, without
# pulling anything: static Go binaries (CGO_ENABLED=0) in FROM scratch images,
# and Redis from this machine's Debian redis-server plus its libraries.
#
# Each image is tagged doorman/<name>:<hash of its build context> and
# doorman/<name>:local; when the hash tag already exists nothing is built, so
# a second run takes the time of `go build` with a warm cache (seconds).
#
#   docker/build.sh                 # all images
#   docker/build.sh doorman redis   # some
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)
out=.build
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(doorman asterisk-sim probe redis)

command -v docker >/dev/null || { echo "build: docker is not installed" >&2; exit 1; }

# gobin PKG NAME: a static binary without a VCS stamp, so
# an unchanged source gives an unchanged hash and no image rebuild (no
# -trimpath: it would recompile every package the tests compiled already).
gobin() {
	(cd "$root" && CGO_ENABLED=0 go build -buildvcs=false -ldflags='-s -w' -o "docker/$out/$2/$2" "$1")
}

# redis_rootfs DIR: redis-server and exactly the libraries it loads, at their
# paths. Chosen over a debootstrapped Debian base because it needs no network,
# takes a second, and follows the redis-server the host's setup installed.
redis_rootfs() {
	local dir=$1 bin
	bin=$(command -v redis-server) || { echo "build: redis-server not found (run scripts/setup.sh)" >&2; exit 1; }
	rm -rf "$dir" && mkdir -p "$dir/usr/bin" "$dir/tmp"
	cp -L "$bin" "$dir/usr/bin/redis-server"
	# ldd prints "lib => /path (addr)" and the loader as "/path (addr)".
	ldd "$bin" | awk '/=> \//{print $3} /^\t\//{print $1}' | while read -r lib; do
		cp -L --parents "$lib" "$dir"
	done
	chmod 1777 "$dir/tmp"
}

# image NAME: stage the context, hash it, build only when the hash is new.
image() {
	local name=$1 ctx=$out/$1
	mkdir -p "$ctx"
	case $name in
	doorman)
		gobin ./app/cmd/doorman doorman
		cp /etc/ssl/certs/ca-certificates.crt "$ctx/" 2>/dev/null || : >"$ctx/ca-certificates.crt"
		;;
	asterisk-sim) gobin ./integration/cmd/asterisk-sim asterisk-sim ;;
	probe) gobin ./integration/docker/cmd/probe probe ;;
	redis) redis_rootfs "$ctx/rootfs" ;;
	*) echo "build: unknown image $name (doorman, asterisk-sim, probe, redis)" >&2; exit 1 ;;
	esac
	cp "Dockerfile.$name" "$ctx/Dockerfile"
	local hash
	hash=$(tar -C "$ctx" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . | sha256sum | cut -c1-16)
	if docker image inspect "doorman/$name:$hash" >/dev/null 2>&1; then
		echo "build: doorman/$name:$hash is up to date"
	else
		# The legacy builder warns about buildx on every run: show output only on failure.
		if ! docker build -q -t "doorman/$name:$hash" "$ctx" >"$out/$name.log" 2>&1; then
			cat "$out/$name.log" >&2
			exit 1
		fi
		echo "build: doorman/$name:$hash built"
	fi
	docker tag "doorman/$name:$hash" "doorman/$name:local"
}

for n in "${images[@]}"; do image "$n"; done
