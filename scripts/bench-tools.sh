#!/usr/bin/env bash
# Installs what make bench-e2e's baseline needs, idempotently: Debian's
# mosquitto (its service, if the package started one, is stopped and
# disabled: the harness starts its own on a free port), and Telegraf
# v1.37.2 built into .tools/bin with only the plugins the baseline uses
# (a full build fails on checksum look-ups of unrelated plugins' modules).
set -euo pipefail

TELEGRAF_VERSION="v1.37.2"
TELEGRAF_TAGS="custom,inputs.mqtt_consumer,outputs.influxdb,outputs.influxdb_v2,parsers.json_v2,parsers.influx"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="$root/.tools/bin"
mkdir -p "$bin"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

if [ ! -x /usr/sbin/mosquitto ]; then
	apt_install mosquitto
	if [ -d /run/systemd/system ]; then
		as_root systemctl disable --now --quiet mosquitto.service >/dev/null 2>&1 || true
	elif [ -x /etc/init.d/mosquitto ]; then
		as_root /etc/init.d/mosquitto stop >/dev/null 2>&1 || true
	fi
fi

telegraf_ok() {
	[ -x "$bin/telegraf" ] || return 1
	go version -m "$bin/telegraf" 2>/dev/null | awk -v v="$TELEGRAF_VERSION" '$1 == "mod" && $2 == "github.com/influxdata/telegraf" && $3 == v { found = 1 } END { exit !found }'
}
if ! telegraf_ok; then
	echo "building telegraf $TELEGRAF_VERSION (plugins: $TELEGRAF_TAGS) into .tools/bin"
	GOBIN="$bin" go install -tags "$TELEGRAF_TAGS" "github.com/influxdata/telegraf/cmd/telegraf@$TELEGRAF_VERSION"
fi
