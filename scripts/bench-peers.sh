#!/bin/sh
# bench-peers.sh — compare fudbench's block1 upload with libcoap's coap-client.
#
# Both upload the same file (256 KiB and 4 MiB) to libcoap's coap-server in
# 64-, 256- and 1024-byte blocks, over UDP and DTLS-PSK, alternately, for
# ROUNDS rounds (default 5); the table shows the medians. Needs the libcoap
# example programs (Debian: libcoap3-bin); installs nothing.
#
# Usage: scripts/bench-peers.sh [ROUNDS] [FILTER]
#   FILTER is a -bench sub-pattern, e.g. 'udp/256KiB' (default: all cases).
set -eu

rounds=${1:-5}
filter=${2:-}
cd "$(dirname "$0")/.."

missing=
for p in coap-server-notls coap-client-notls coap-server-openssl coap-client-openssl; do
	command -v "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "bench-peers: missing libcoap programs:$missing" >&2
	echo "bench-peers: install Debian's libcoap3-bin (coap-client-notls, coap-server-openssl, ...)" >&2
	exit 1
fi

pattern='BenchmarkPeersBlock1'
[ -n "$filter" ] && pattern="$pattern/$filter"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench "^${pattern}\$" -benchtime "${rounds}x" -timeout 60m ./bench/update/ | tee "$out" >&2
if ! grep -q '^BenchmarkPeersBlock1' "$out"; then
	echo "bench-peers: no benchmark results" >&2
	exit 1
fi

echo
echo "fudbench block1 upload vs coap-client -m put (libcoap coap-server), median of $rounds alternating rounds"
awk '
/^BenchmarkPeersBlock1\// {
	split($1, n, "/"); sub(/-[0-9]+$/, "", n[4])
	for (i = 3; i < NF; i += 2) v[$(i+1)] = $i
	key = n[2] " " n[3] " " n[4]
	row[++rows] = sprintf("%-5s %-7s %-10s %9.4f %9.4f %10.4f %7.2f %9.2f %10.4f %9.4f", n[2], n[3], n[4], v["fud-s"], v["cc-s"], v["cc-start-s"], v["ratio"], v["ratio-net"], v["fud-cpu-s"], v["cc-cpu-s"])
	delete v
}
END {
	printf "%-5s %-7s %-10s %9s %9s %10s %7s %9s %10s %9s\n", "link", "size", "block", "fud-s", "cc-s", "cc-start-s", "ratio", "ratio-net", "fud-cpu-s", "cc-cpu-s"
	for (i = 1; i <= rows; i++) print row[i]
}' "$out"
