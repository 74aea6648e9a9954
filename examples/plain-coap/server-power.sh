#!/bin/sh
# Power for libcoap's coap-server as a device, for fudbench's exec driver.
#   on     start the server, unless it runs
#   off    kill it with SIGKILL: nothing it held survives, as in a power cut
#   state  exit 0 when it runs, 1 when it does not
# COAP_SERVER, PORT and DEVICE_DIR come from the bench file's env:; the
# default coap-server falls back to Debian's coap-server-notls.
set -eu
mkdir -p "$DEVICE_DIR"
pidfile=$DEVICE_DIR/coap-server.pid

running() {
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	# A killed server nobody has reaped yet is a zombie: off.
	st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

case "${1:-}" in
on)
	running && exit 0
	if ! command -v "$COAP_SERVER" >/dev/null; then
		if [ "$COAP_SERVER" = coap-server ] && command -v coap-server-notls >/dev/null; then
			COAP_SERVER=coap-server-notls # Debian's libcoap3-bin
		else
			echo "$COAP_SERVER not found: install libcoap's coap-server or set COAP_SERVER" >&2
			exit 3
		fi
	fi
	setsid "$COAP_SERVER" -A 127.0.0.1 -p "$PORT" -d 4 -v 3 \
		</dev/null >>"$DEVICE_DIR/coap-server.log" 2>&1 &
	echo $! >"$pidfile"
	echo "on $!" >>"$DEVICE_DIR/power.log"
	# A server that cannot bind its port exits at once: say so, rather
	# than leave the bench talking to whatever holds the port.
	sleep 0.05
	if ! running; then
		echo "$COAP_SERVER exited at once; its log says:" >&2
		tail -n 3 "$DEVICE_DIR/coap-server.log" >&2
		exit 3
	fi
	;;
off)
	if running; then
		kill -KILL "$(cat "$pidfile")"
		echo "cut $(cat "$pidfile")" >>"$DEVICE_DIR/power.log"
	fi
	rm -f "$pidfile"
	;;
state)
	running
	;;
*)
	echo "usage: $0 on|off|state" >&2
	exit 2
	;;
esac
