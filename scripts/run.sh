#!/usr/bin/env bash
# make run: the whole stack in the foreground on loopback: influxd (unless
# TRACKGATE_INFLUX_URL points at one), the gateway with its embedded broker,
# the cloud, the firmware-bridge (OsmAnd, OwnTracks HTTP, GT06, H02), and a
# simulated GPS receiver (gpssim, a u-blox on a pseudo-
# terminal at ./var/gps0) that the gateway reads as it would /dev/ttyUSB0.
# Data lives under ./var. Ctrl-C stops everything, newest first.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

HTTP_PORT=${HTTP_PORT:-8080}
MQTT_PORT=${MQTT_PORT:-1883}
WS_PORT=${WS_PORT:-8083}
GATEWAY_HTTP_PORT=${GATEWAY_HTTP_PORT:-8081}
INFLUX_PORT=${INFLUX_PORT:-8086}
BRIDGE_HTTP_PORT=${BRIDGE_HTTP_PORT:-8085}
BRIDGE_HOST=${BRIDGE_HOST:-127.0.0.1} # 0.0.0.0 to take trackers and phones from the network
DEVICE=${DEVICE:-demo-van}
VAR="$root/var"
LOGS="$VAR/log"
mkdir -p "$LOGS"

pids=()
names=()
stop_all() {
	trap '' INT TERM
	trap - EXIT
	echo
	echo "stopping..."
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		if kill -0 "${pids[i]}" 2>/dev/null; then
			kill -TERM "${pids[i]}" 2>/dev/null || true
			for _ in $(seq 100); do kill -0 "${pids[i]}" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "${pids[i]}" 2>/dev/null || true
			wait "${pids[i]}" 2>/dev/null || true
			echo "  stopped ${names[i]}"
		fi
	done
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

start() { # start NAME CMD... — runs CMD in the background, logging to var/log/NAME.log
	local name=$1
	shift
	# Its own session: Ctrl-C reaches only this script, which stops the
	# processes one by one, newest first.
	setsid "$@" >"$LOGS/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
}

wait_for() { # wait_for WHAT URL — until URL answers 2xx, or fail with the log
	local what=$1 url=$2
	for _ in $(seq 600); do
		curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
		if ! kill -0 "${pids[-1]}" 2>/dev/null; then
			echo "$what exited; its log ($LOGS/$what.log):" >&2
			tail -20 "$LOGS/$what.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "$what did not become ready at $url; see $LOGS/$what.log" >&2
	exit 1
}

if [ -n "${TRACKGATE_INFLUX_URL:-}" ]; then
	INFLUX_URL=$TRACKGATE_INFLUX_URL
	echo "using InfluxDB at $INFLUX_URL (TRACKGATE_INFLUX_URL)"
else
	INFLUX_URL="http://127.0.0.1:$INFLUX_PORT"
	mkdir -p "$VAR/influxdb"
	cat >"$VAR/influxdb/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$((INFLUX_PORT + 2))"
[meta]
  dir = "$VAR/influxdb/meta"
  logging-enabled = false
[data]
  dir = "$VAR/influxdb/data"
  wal-dir = "$VAR/influxdb/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$INFLUX_PORT"
  auth-enabled = false
  log-enabled = false
  flux-enabled = true
  pprof-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
  suppress-logo = true
CONF
	start influxd "$root/.tools/bin/influxd" run -config "$VAR/influxdb/influxdb.conf"
	wait_for influxd "$INFLUX_URL/ping"
	curl -fsS -o /dev/null -XPOST "$INFLUX_URL/query" --data-urlencode "q=CREATE DATABASE trackgate"
fi

start gpssim "$root/bin/gpssim" --link "$VAR/gps0" --rate 1 --baud 9600 --profile ublox
ISSUER="http://127.0.0.1:$HTTP_PORT"
# A demo user to sign in with, made once; its password is kept in var/ (mode 0600).
if [ ! -s "$VAR/demo-password" ]; then
	(umask 077 && head -c 12 /dev/urandom | base64 | tr -d '/+=' >"$VAR/demo-password")
	"$root/bin/cloud" user add demo --data "$VAR/cloud" --issuer "$ISSUER" <"$VAR/demo-password" 2>/dev/null ||
		"$root/bin/cloud" user passwd demo --data "$VAR/cloud" --issuer "$ISSUER" <"$VAR/demo-password"
fi
# A phone of the demo user's, with a fresh device token each run (mode 0600;
# the previous one is revoked).
"$root/bin/cloud" device rm demo-phone --data "$VAR/cloud" --issuer "$ISSUER" >/dev/null 2>&1 || true
(umask 077 && "$root/bin/cloud" device add --owner demo --name "demo phone" demo-phone \
	--data "$VAR/cloud" --issuer "$ISSUER" >"$VAR/demo-phone.token" 2>/dev/null)
# The simulated receiver's device, with automatic tracks (a new one after a
# 5-minute gap), so that its positions show up as tracks of demo.
"$root/bin/cloud" device rm "$DEVICE" --data "$VAR/cloud" --issuer "$ISSUER" >/dev/null 2>&1 || true
"$root/bin/cloud" device add --owner demo --name "demo van (simulated GPS)" --auto-split 5m "$DEVICE" \
	--data "$VAR/cloud" --issuer "$ISSUER" >/dev/null 2>&1
start cloud "$root/bin/cloud" serve --http "127.0.0.1:$HTTP_PORT" --issuer "$ISSUER" --data "$VAR/cloud" \
	--mqtt "tcp://127.0.0.1:$MQTT_PORT" --influx-url "$INFLUX_URL" --influx-bucket "${TRACKGATE_INFLUX_BUCKET:-trackgate}"
wait_for cloud "$ISSUER/healthz"
# The gateway's broker checks every client's token against the cloud's keys
# and revocation list (cached in var/gateway).
start gateway "$root/bin/gateway" --mqtt "127.0.0.1:$MQTT_PORT" --mqtt-ws "127.0.0.1:$WS_PORT" \
	--issuer "$ISSUER" --data "$VAR/gateway" \
	--http "127.0.0.1:$GATEWAY_HTTP_PORT" --source "serial:$VAR/gps0=$DEVICE"
wait_for gateway "http://127.0.0.1:$GATEWAY_HTTP_PORT/healthz"
wait_for cloud "$ISSUER/readyz"
# The firmware-bridge's service client, made once; its secret is kept in
# var/ (mode 0600) as `cloud client add` prints it.
if [ ! -s "$VAR/bridge-client.json" ]; then
	name=firmware-bridge
	(umask 077 && "$root/bin/cloud" client add --service --scope "bridge devices:resolve" "$name" \
		--data "$VAR/cloud" --issuer "$ISSUER" >"$VAR/bridge-client.json" 2>/dev/null) || {
		name="firmware-bridge-$(date +%s)" # the data directory has one whose secret is gone
		(umask 077 && "$root/bin/cloud" client add --service --scope "bridge devices:resolve" "$name" \
			--data "$VAR/cloud" --issuer "$ISSUER" >"$VAR/bridge-client.json")
	}
fi
BRIDGE_CLIENT=$(sed -n 's/.*"client_id": *"\([^"]*\)".*/\1/p' "$VAR/bridge-client.json")
start firmware-bridge "$root/bin/firmware-bridge" --cloud "$ISSUER" --mqtt "tcp://127.0.0.1:$MQTT_PORT" --data "$VAR/bridge" \
	--client-id "$BRIDGE_CLIENT" --client-secret-file "$VAR/bridge-client.json" --http "127.0.0.1:$BRIDGE_HTTP_PORT" \
	--osmand "$BRIDGE_HOST:5055" --owntracks-http "$BRIDGE_HOST:5144" --gt06 "$BRIDGE_HOST:5023" --h02 "$BRIDGE_HOST:5013"
wait_for firmware-bridge "http://127.0.0.1:$BRIDGE_HTTP_PORT/readyz"

cat <<MSG

trackgate is running (logs in var/log/, data in var/):
  MQTT broker      tcp://127.0.0.1:$MQTT_PORT   ws://127.0.0.1:$WS_PORT
  cloud            $ISSUER   (/healthz /readyz /metrics, OAuth metadata at /.well-known/openid-configuration)
  website          $ISSUER/   sign in as demo, password $(cat "$VAR/demo-password") (var/demo-password)
  InfluxDB         $INFLUX_URL   (database trackgate)
  gateway          http://127.0.0.1:$GATEWAY_HTTP_PORT   (/status /metrics)
  GPS receiver     gpssim on var/gps0 (u-blox, 1 Hz, 9600 baud), read by the gateway as device $DEVICE

Stored positions (run in another terminal):
  curl -sG '$INFLUX_URL/query' --data-urlencode db=trackgate \\
    --data-urlencode "q=SELECT lat, lon, speed, course FROM position WHERE device='$DEVICE' ORDER BY time DESC LIMIT 5"

Publish a position as the demo phone (user name = device id, password = its device token):
  mosquitto_pub -p $MQTT_PORT -q 1 -i demo-phone -u demo-phone -P "\$(cat var/demo-phone.token)" \\
    -t devices/demo-phone/positions -m "{\"time\":\"\$(date -u +%FT%TZ)\",\"lat\":52.37,\"lon\":4.89}"
  (an OwnTracks app: host 127.0.0.1, port $MQTT_PORT, user demo-phone, password the token, TLS off)

Trackers and apps that cannot speak MQTT with tokens, through the firmware-bridge
(OsmAnd/Traccar Client $BRIDGE_HOST:5055, OwnTracks HTTP :5144/pub, GT06 :5023, H02 :5013;
http://127.0.0.1:$BRIDGE_HTTP_PORT/metrics):
  curl "http://127.0.0.1:5055/?id=demo-phone&timestamp=\$(date +%s)&lat=52.37&lon=4.89&speed=10"
  bin/trackctl devices add MY-TRACKER --identifier IMEI     (then point the tracker at port 5023 or 5013)

The command-line client (signs in through the browser; --device prints a code instead):
  bin/trackctl login --server $ISSUER && bin/trackctl tracks ls
  bin/trackctl import FILE.gpx --device $DEVICE      (GPX, NMEA logs, GeoJSON or CSV)

The receiver's state and counters, the broker's and the ingest counters:
  curl -s http://127.0.0.1:$GATEWAY_HTTP_PORT/status
  curl -s http://127.0.0.1:$GATEWAY_HTTP_PORT/metrics | grep ^trackgate_broker
  curl -s http://127.0.0.1:$HTTP_PORT/metrics | grep ^trackgate_

Ctrl-C stops everything.
MSG

# Wait until interrupted, or until one of the processes dies.
while :; do
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[i]}" 2>/dev/null; then
			echo "${names[i]} exited; last lines of $LOGS/${names[i]}.log:" >&2
			tail -20 "$LOGS/${names[i]}.log" >&2
			exit 1
		fi
	done
	sleep 1
done
