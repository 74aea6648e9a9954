#!/usr/bin/env bash
# bench-peers.sh — compare fudbench's block1 upload with libcoap's coap-client.
#
# Both upload the same file (256 KiB and 4 MiB) to libcoap's coap-server in
# 64-, 256- and 1024-byte blocks, over UDP and DTLS-PSK, alternately, for
# ROUNDS rounds; the table shows the medians. Installs nothing.
#
# Two comparisons, and a third over a lossy link (--link, below):
#
#   in-process (default): package coap's upload in a test process against
#   the coap-client process (go test -bench BenchmarkPeersBlock1 ./coap/);
#   needs the libcoap example programs of Debian's libcoap3-bin.
#
#   --process: whole processes, what a user types: a release build of
#   `fudbench update --url coap://127.0.0.1:PORT/x --block-size SIZE FILE`
#   (coaps:// with --psk-identity/--psk-file for DTLS) against
#   `coap-client -m put -b SIZE -f FILE coap://127.0.0.1:PORT/y`, wall and
#   CPU (user + system) time of each process. One coap-server (-d 64) per
#   case on a free port (DTLS on the port above it). Uses libcoap 4.3.5 as
#   .ci/run builds it ($FUDBENCH_LIBCOAP, else
#   ${XDG_CACHE_HOME:-~/.cache}/fudbench-peers/libcoap-4.3.5/build), else
#   Debian's coap-server-openssl/coap-client-openssl.
#
#   --link: uploads over an impaired link (go test -bench
#   BenchmarkLinkUpload ./coap/): a 16 KiB image in 1024-byte blocks to
#   libcoap 4.3.5's coap-server (-L 7, Q-Block) through package link's UDP
#   forwarder at 0, 1, 5 and 20 % loss each way and 40 ms delay, by package
#   coap's Block1 and Q-Block1 (QPut) clients and by coap-client with Block1
#   and with Q-Block1 (-N -L 5), the same link seed for each; median
#   seconds per upload, goodput, blocks sent again and uploads started
#   again per upload, and the share of datagrams the forwarder dropped.
#   Needs libcoap 4.3.5 as .ci/run builds it (see --process).
#
# Usage: scripts/bench-peers.sh [--process | --link] [ROUNDS] [FILTER]
#   ROUNDS defaults to 5 (in-process), 7 (--process) and 3 (--link).
#   FUDBENCH=PATH runs that fudbench binary instead of building one.
#   FILTER selects cases, e.g. 'udp/256KiB' or 'dtls/4MiB/block1024' (for the
#   in-process comparison it is a -bench sub-pattern; default: all cases);
#   for --link e.g. 'loss5pct' or 'loss20pct/cc-qblock1'.
set -eu

mode=inprocess
case "${1:-}" in
--process)
	mode=process
	shift
	;;
--link)
	mode=link
	shift
	;;
esac
filter=${2:-}
cd "$(dirname "$0")/.."

# inprocess runs BenchmarkPeersBlock1 and prints its table.
inprocess() {
	local rounds=${1:-5}
	local missing=
	for p in coap-server-notls coap-client-notls coap-server-openssl coap-client-openssl; do
		command -v "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		echo "bench-peers: missing libcoap programs:$missing" >&2
		echo "bench-peers: install Debian's libcoap3-bin (coap-client-notls, coap-server-openssl, ...)" >&2
		exit 1
	fi

	local pattern='BenchmarkPeersBlock1'
	[ -n "$filter" ] && pattern="$pattern/$filter"
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
	go test -run '^$' -bench "^${pattern}\$" -benchtime "${rounds}x" -timeout 60m ./coap/ | tee "$out" >&2
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
}

# linkbench runs BenchmarkLinkUpload and prints its table.
linkbench() {
	local rounds=${1:-3}
	local dir=${FUDBENCH_LIBCOAP:-${XDG_CACHE_HOME:-$HOME/.cache}/fudbench-peers/libcoap-4.3.5/build}
	if [ ! -x "$dir/coap-server" ] || [ ! -x "$dir/coap-client" ]; then
		echo "bench-peers: no libcoap 4.3.5 in $dir: bash .ci/run builds it (Q-Block)" >&2
		exit 1
	fi
	export FUDBENCH_LIBCOAP=$dir

	local pattern='BenchmarkLinkUpload'
	[ -n "$filter" ] && pattern="$pattern/$filter"
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
	go test -run '^$' -bench "^${pattern}\$" -benchtime "${rounds}x" -timeout 60m ./coap/ | tee "$out" >&2
	if ! grep -q '^BenchmarkLinkUpload/' "$out"; then
		echo "bench-peers: no benchmark results" >&2
		exit 1
	fi

	echo
	echo "upload of a 16 KiB image in 1024-byte blocks to libcoap 4.3.5 coap-server over a lossy link (40 ms each way), median of $rounds rounds; ratio: s / fud-block1's s at the same loss"
	awk '
/^BenchmarkLinkUpload\// {
	split($1, n, "/"); sub(/-[0-9]+$/, "", n[3])
	loss = n[2]; sub(/^loss/, "", loss); sub(/pct$/, "%", loss)
	for (i = 3; i < NF; i += 2) v[$(i+1)] = $i
	if (n[3] == "fud-block1") base[loss] = v["s"]
	ratio = (loss in base && base[loss] > 0) ? sprintf("%7.2f", v["s"] / base[loss]) : sprintf("%7s", "-")
	row[++rows] = sprintf("%-5s %-12s %8.2f %s %15.1f %7.2f %8.2f %8.1f", loss, n[3], v["s"], ratio, v["goodput-kbit/s"], v["resent"], v["restarts"], v["lost-pct"])
	delete v
}
END {
	printf "%-5s %-12s %8s %7s %15s %7s %8s %8s\n", "loss", "client", "s", "ratio", "goodput-kbit/s", "resent", "restarts", "lost-pct"
	for (i = 1; i <= rows; i++) print row[i]
}' "$out"
}

# freeport prints a UDP port p, with p+1, that nothing on this host has
# bound, below the ephemeral range (so no outgoing socket takes it
# meanwhile). The server's start confirms it.
freeport() {
	local used p
	used=$(ss -Huan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }')
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 12000))
		if ! grep -qx -e "$p" -e "$((p + 1))" <<<"$used"; then
			echo "$p"
			return
		fi
	done
	echo "bench-peers: no free port pair" >&2
	exit 1
}

# timed OUT CMD...: runs CMD and appends "wall user sys" (seconds) to OUT.
timed() {
	local out=$1 TIMEFORMAT='%3R %3U %3S'
	shift
	if ! { time "$@" >/dev/null 2>"$tmp/log"; } 2>>"$out"; then
		echo "bench-peers: failed: $*" >&2
		cat "$tmp/log" >&2
		exit 1
	fi
}

# median FILE COLUMN
median() {
	awk -v c="$2" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# process runs the whole-process comparison and prints its table.
process() {
	local rounds=${1:-7}
	local dir=${FUDBENCH_LIBCOAP:-${XDG_CACHE_HOME:-$HOME/.cache}/fudbench-peers/libcoap-4.3.5/build}
	local server=$dir/coap-server client=$dir/coap-client
	if [ ! -x "$server" ] || [ ! -x "$client" ]; then
		server=$(command -v coap-server-openssl || true)
		client=$(command -v coap-client-openssl || true)
	fi
	if [ -z "$server" ] || [ -z "$client" ]; then
		echo "bench-peers: no libcoap with DTLS: bash .ci/run builds libcoap 4.3.5, or install Debian's libcoap3-bin" >&2
		exit 1
	fi
	tmp=$(mktemp -d)
	srv=
	trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"' EXIT
	local fudbench=${FUDBENCH:-}
	if [ -z "$fudbench" ]; then
		echo "bench-peers: building fudbench (go build -trimpath)" >&2
		fudbench=$tmp/fudbench
		go build -trimpath -o "$fudbench" ./cmd/fudbench
	fi
	head -c $((256 << 10)) /dev/urandom >"$tmp/256KiB"
	head -c $((4 << 20)) /dev/urandom >"$tmp/4MiB"
	local key=peer-bench-secret
	printf '%s\n' "$key" >"$tmp/psk"
	printf '%-5s %-7s %-10s %8s %8s %9s %9s %10s %9s\n' link size block fud-s cc-s ratio fud-cpu-s cc-cpu-s cpu-ratio
	local link size bs port url fudargs ccargs
	for link in udp dtls; do
		for size in 256KiB 4MiB; do
			for bs in 64 256 1024; do
				case "$link/$size/block$bs" in *"$filter"*) ;; *) continue ;; esac
				for _ in 1 2 3; do
					port=$(freeport)
					"$server" -A 127.0.0.1 -p "$port" -d 64 -v 0 -k "$key" 2>"$tmp/server.log" &
					srv=$!
					if [ "$link" = udp ]; then
						url=coap://127.0.0.1:$port
						fudargs=()
						ccargs=()
					else
						url=coaps://127.0.0.1:$((port + 1))
						fudargs=(--psk-identity client --psk-file "$tmp/psk")
						ccargs=(-k "$key" -u client)
					fi
					local up=
					for _ in $(seq 100); do
						if "$client" "${ccargs[@]}" -m get -B 1 "$url/" >/dev/null 2>&1; then
							up=1
							break
						fi
						kill -0 "$srv" 2>/dev/null || break
						sleep 0.05
					done
					[ -n "$up" ] && break
					kill "$srv" 2>/dev/null || true
					wait "$srv" 2>/dev/null || true
					srv=
				done
				if [ -z "$srv" ]; then
					echo "bench-peers: coap-server did not start:" >&2
					cat "$tmp/server.log" >&2
					exit 1
				fi
				: >"$tmp/fud" && : >"$tmp/cc"
				fud=("$fudbench" update --url "$url/x" --block-size "$bs" "${fudargs[@]}" "$tmp/$size")
				cc=("$client" "${ccargs[@]}" -m put -b "$bs" -f "$tmp/$size" "$url/y")
				for i in $(seq "$rounds"); do
					if [ $((i % 2)) = 1 ]; then
						timed "$tmp/fud" "${fud[@]}"
						timed "$tmp/cc" "${cc[@]}"
					else
						timed "$tmp/cc" "${cc[@]}"
						timed "$tmp/fud" "${fud[@]}"
					fi
				done
				# What fudbench uploaded is read back once.
				"$client" "${ccargs[@]}" -m get -B 60 -o "$tmp/back" "$url/x" >/dev/null 2>&1
				if ! cmp -s "$tmp/back" "$tmp/$size"; then
					echo "bench-peers: $link $size block $bs: the file read back differs from the one fudbench uploaded" >&2
					exit 1
				fi
				kill "$srv" 2>/dev/null || true
				wait "$srv" 2>/dev/null || true
				srv=
				local fw fc cw cc_
				fw=$(median "$tmp/fud" 1)
				cw=$(median "$tmp/cc" 1)
				fc=$(awk '{ print $2 + $3 }' "$tmp/fud" >"$tmp/fudcpu" && median "$tmp/fudcpu" 1)
				cc_=$(awk '{ print $2 + $3 }' "$tmp/cc" >"$tmp/cccpu" && median "$tmp/cccpu" 1)
				awk -v l="$link" -v s="$size" -v b="block$bs" -v fw="$fw" -v cw="$cw" -v fc="$fc" -v cc="$cc_" 'BEGIN {
					printf "%-5s %-7s %-10s %8.3f %8.3f %9.2f %9.3f %10.3f %9.2f\n", l, s, b, fw, cw, (cw > 0 ? fw / cw : 0), fc, cc, (cc > 0 ? fc / cc : 0)
				}'
			done
		done
	done
	echo "fudbench update --url (release build) vs coap-client -m put ($client), whole processes, median of $rounds alternating runs; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
}

case "$mode" in
process) process "${1:-}" ;;
link) linkbench "${1:-}" ;;
*) inprocess "${1:-}" ;;
esac
