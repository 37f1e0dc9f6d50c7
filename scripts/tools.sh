#!/usr/bin/env bash
# Installs the tools that tests and lint need into .tools/bin (plus the
# Debian mosquitto-clients package). Idempotent: anything already present at
# the pinned version is reused, and nothing is printed when there is nothing
# to do.
set -euo pipefail

INFLUXD_VERSION="v1.8.10"
STATICCHECK_VERSION="v0.8.2" # = staticcheck 2026.2.2 (newest as of writing; builds with Go 1.26)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="$root/.tools/bin"
mkdir -p "$bin"

# module_version BINARY MODULE prints the version of MODULE recorded in the
# build info of BINARY (empty if unknown).
module_version() {
	go version -m "$1" 2>/dev/null | awk -v m="$2" '$1 == "mod" && $2 == m { print $3; exit }'
}

# influxd: `influxd version` prints "vunknown" when built with `go install`
# (the release ldflags are missing), so fall back to the module version
# recorded in the binary's build info.
influxd_ok() {
	[ -x "$bin/influxd" ] || return 1
	if "$bin/influxd" version 2>/dev/null | grep -q "${INFLUXD_VERSION#v}"; then
		return 0
	fi
	[ "$(module_version "$bin/influxd" github.com/influxdata/influxdb)" = "$INFLUXD_VERSION" ]
}
if ! influxd_ok; then
	echo "installing influxd $INFLUXD_VERSION into .tools/bin"
	GOBIN="$bin" go install "github.com/influxdata/influxdb/cmd/influxd@$INFLUXD_VERSION"
fi

# staticcheck: `staticcheck -version` prints e.g. "staticcheck 2026.2.2 (0.8.2)".
staticcheck_ok() {
	[ -x "$bin/staticcheck" ] || return 1
	"$bin/staticcheck" -version 2>/dev/null | grep -qF "(${STATICCHECK_VERSION#v})"
}
if ! staticcheck_ok; then
	echo "installing staticcheck $STATICCHECK_VERSION into .tools/bin"
	GOBIN="$bin" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"

# mosquitto_pub / mosquitto_sub from Debian's mosquitto-clients.
if ! command -v mosquitto_pub >/dev/null 2>&1; then
	apt_install mosquitto-clients
fi

# gpsd (in /usr/sbin, often not on a user's PATH) and gpsfake from Debian's
# gpsd and gpsd-clients: the NMEA test oracle of internal/testenv/gpsd.go.
# Tests start their own gpsd on a free port, so a system gpsd that the package
# may have started (systemd's gpsd.socket on port 2947, or the SysV init
# script) is stopped and disabled right after installing.
if ! { command -v gpsd || [ -x /usr/sbin/gpsd ]; } >/dev/null 2>&1 || ! command -v gpsfake >/dev/null 2>&1; then
	apt_install gpsd gpsd-clients
	if [ -d /run/systemd/system ]; then
		as_root systemctl disable --now --quiet gpsd.socket gpsd.service >/dev/null 2>&1 || true
	elif [ -x /etc/init.d/gpsd ]; then
		as_root /etc/init.d/gpsd stop >/dev/null 2>&1 || true
	fi
fi

# gpsbabel and ogrinfo (Debian gdal-bin): the readers that track exports are
# checked with (GPX by gpsbabel, GeoJSON by GDAL's GeoJSON driver).
if ! command -v gpsbabel >/dev/null 2>&1; then
	apt_install gpsbabel
fi
if ! command -v ogrinfo >/dev/null 2>&1; then
	apt_install gdal-bin
fi

# Debian's chromium: the browser the website's end-to-end test drives
# (through playwright-core, which scripts/web.sh installs from npm).
if ! command -v chromium >/dev/null 2>&1; then
	apt_install chromium
fi
