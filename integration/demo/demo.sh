#!/usr/bin/env bash
# doorman demo: a two-server cluster on this machine, each "server" a network
# namespace running the Asterisk simulator beside a real doorman agent, with
# Redis on a third host and an attacker and a phone on two more. It plays
# the three jobs once, prints what happened, then keeps running until Ctrl-C.
# Needs root (network namespaces, nftables). Everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (network namespaces, nftables)" >&2; exit 1; }

BIN=${BIN:-bin}
DIR=$(mktemp -d /tmp/doorman-demo.XXXXXX)
TOKEN=demo-token
P=dmdemo
hosts=(srva srvb redis attacker phone)

cleanup() {
	set +e
	for h in "${hosts[@]}"; do
		for pid in $(ip netns pids $P-$h 2>/dev/null); do kill "$pid" 2>/dev/null; done
	done
	sleep 0.5
	for h in "${hosts[@]}"; do ip netns del $P-$h 2>/dev/null; done
	ip netns del $P-hub 2>/dev/null
	echo "demo: cleaned up (logs were in $DIR)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add $P-hub
ip -n $P-hub link add br0 type bridge
ip -n $P-hub link set br0 up
i=0
for h in "${hosts[@]}"; do
	i=$((i + 1))
	ip netns add $P-$h
	ip -n $P-$h link set lo up
	ip -n $P-hub link add v$i type veth peer name eth0 netns $P-$h
	ip -n $P-hub link set v$i master br0 up
	ip -n $P-$h addr add 198.18.0.$i/24 dev eth0
	ip -n $P-$h link set eth0 up
done
ns() { local h=$1; shift; ip netns exec $P-$h "$@"; }

ns redis redis-server --bind 198.18.0.3 --port 6379 --save "" --appendonly no --protected-mode no >"$DIR/redis.log" 2>&1 &

for n in a b; do
	ip=198.18.0.$([ $n = a ] && echo 1 || echo 2)
	mkdir -p "$DIR/srv$n"
	ns srv$n "$BIN/asterisk-sim" -system-name srv$n -entity-id 02:00:00:00:00:0$n \
		-ami 0.0.0.0:5038 -sip 0.0.0.0:5060 -http 127.0.0.1:8088 -control 127.0.0.1:8089 \
		-ami-user doorman:demo-ami -ari-user doorman:demo-ari \
		-endpoint 1001:pw1001 -endpoint 1002:pw1002 -endpoint 1003:pw1003 \
		-security-log "$DIR/srv$n/security" -state-dir "$DIR/srv$n/astdb" >"$DIR/srv$n/sim.log" 2>&1 &
	cat >"$DIR/srv$n/doorman.yaml" <<YAML
server: {name: srv$n, sip_addr: "$ip:5060", cluster: [198.18.0.1, 198.18.0.2], heartbeat_ttl: 6s}
ami: {addr: "127.0.0.1:5038", username: doorman, secret: demo-ami}
ari: {url: "http://127.0.0.1:8088/ari", username: doorman, password: demo-ari}
store: {redis: {addrs: ["198.18.0.3:6379"]}}
firewall: {backend: nftables}
api: {listen: "127.0.0.1:9485", token: $TOKEN}
intrusion: {ban_time: 20s, permanent_after: 3}
finder: {listen: "0.0.0.0:4573"}
YAML
done
sleep 1
for n in a b; do
	ns srv$n "$BIN/doorman" agent -c "$DIR/srv$n/doorman.yaml" >"$DIR/srv$n/doorman.log" 2>&1 &
done
for n in a b; do
	for _ in $(seq 50); do ns srv$n "$BIN/doorman" bans list -api 127.0.0.1:9485 -token $TOKEN >/dev/null 2>&1 && break; sleep 0.2; done
done
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ctl() { local h=$1 path=$2 body=${3:-}; if [ -n "$body" ]; then
	ns "$h" curl -s -X POST -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:8089$path"; else
	ns "$h" curl -s "http://127.0.0.1:8089$path"; fi; }

say "Intrusion Monitor: the attacker (198.18.0.4) tries a wrong password on srva"
ns attacker "$BIN/asterisk-sim" phone -server 198.18.0.1:5060 -user 1001 -password guess -count 3 -interval 300ms -timeout 1s || true
say "bans as srvb sees them (decided on srva, enforced on both kernels)"
ns srvb "$BIN/doorman" bans list -api 127.0.0.1:9485 -token $TOKEN
ns srvb nft list table inet doorman | sed -n '/elements/p'

say "Extension Finder: a phone (198.18.0.5) registers 1002 on srvb; srva's dialplan asks where it is"
ns phone "$BIN/asterisk-sim" phone -server 198.18.0.2:5060 -user 1002 -password pw1002 -hold >"$DIR/phone.log" 2>&1 &
sleep 2
ns srva "$BIN/doorman" whereis 1002 -api 127.0.0.1:9485 -token $TOKEN
ctl srva /control/agi '{"addr":"127.0.0.1:4573","script":"dialLocal","args":["1002","25","TtWw","1002"]}'
echo

say "Busy Lamp Monitor: 1002 rings on srvb; srva's Stasis:1002 follows"
ctl srvb /control/devicestate '{"device":"PJSIP/1002","state":"RINGING"}'
sleep 0.5
ctl srva "/control/devicestate?device=Stasis:1002"; echo
ns srva "$BIN/doorman" lamps -api 127.0.0.1:9485 -token $TOKEN

say "running; try for example:"
cat <<EOF2
  ip netns exec $P-attacker $BIN/asterisk-sim phone -server 198.18.0.2:5060 -user 1003 -password guess
  ip netns exec $P-srva $BIN/doorman bans list -api 127.0.0.1:9485 -token $TOKEN
  ip netns exec $P-srva $BIN/doorman whereis 1002 -api 127.0.0.1:9485 -token $TOKEN
  ip netns exec $P-srvb curl -s -XPOST -d '{"device":"PJSIP/1002","state":"INUSE"}' http://127.0.0.1:8089/control/devicestate
  ip netns exec $P-srva $BIN/doorman lamps -api 127.0.0.1:9485 -token $TOKEN
logs: $DIR   (Ctrl-C stops everything)
EOF2
wait
