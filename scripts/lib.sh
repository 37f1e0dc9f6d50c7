# Shell helpers of the project's scripts (sourced, not run).

# as_root COMMAND... runs a command as root (through sudo when not root).
as_root() {
	if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		"$@"
	fi
}

# apt_install PACKAGE... installs Debian packages quietly.
apt_install() {
	echo "installing $* (apt-get)"
	as_root apt-get update -qq >/dev/null
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
