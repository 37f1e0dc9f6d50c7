#!/usr/bin/env bash
# Builds the website into cloud/web/dist, which the cloud binary embeds:
# installs node and npm (Debian) when missing, the npm packages pinned in
# cloud/web/package-lock.json when node_modules is missing or was installed
# from another lock file, then bundles with esbuild. Idempotent; the bundle
# takes about a second.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
cd "$root/cloud/web"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	apt_install nodejs npm
fi

stamp=node_modules/.trackgate-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
	echo "installing the website's npm packages (npm ci)"
	npm ci --no-audit --no-fund --loglevel=error
	echo "$want" >"$stamp"
fi
node build.mjs
