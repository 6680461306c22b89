#!/usr/bin/env bash
# setup.sh — installs what a fresh Debian 12 machine lacks to build and test
# tcpspool, quietly, only when something is missing. Sourced (it changes no
# shell options of its caller) or run.

TCPSPOOL_PACKAGES=(
	gcc clang libclang-rt-14-dev meson ninja-build pkg-config
	zlib1g-dev libdeflate-dev libbsd-dev libcriterion-dev
	libisal-dev	# ISA-L igzip headers; libisal2 is dlopened for level-1 frames
	python3 procps iproute2 nginx-light socat mbuffer curl gdb
	redis-server haproxy nodejs memcached lighttpd apache2
	tmux debhelper lintian prometheus
)

tcpspool_missing_packages() {
	local p
	for p in "${TCPSPOOL_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
			grep -q '^install ok installed$' || printf '%s\n' "$p"
	done
}

tcpspool_setup() {
	local missing sudo=()
	mapfile -t missing < <(tcpspool_missing_packages)
	[ "${#missing[@]}" -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo=(sudo)
		else
			echo "setup: missing packages: ${missing[*]}; run as root or install them" >&2
			return 1
		fi
	fi
	echo "setup: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	# Packages such as nginx start their service on install; tests run
	# their own instances, so keep services from starting meanwhile.
	local policy=/usr/sbin/policy-rc.d made_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null &&
			"${sudo[@]}" chmod 755 "$policy" && made_policy=1
	fi
	tcpspool_apt "${missing[@]}"
	local rc=$?
	[ "$made_policy" -eq 1 ] && "${sudo[@]}" rm -f "$policy"
	return "$rc"
}

tcpspool_apt() {
	if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/tmp/tcpspool-apt.log 2>&1; then
		"${sudo[@]}" apt-get update -qq >>/tmp/tcpspool-apt.log 2>&1
		"${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >>/tmp/tcpspool-apt.log 2>&1 || {
			echo "setup: apt-get failed; see /tmp/tcpspool-apt.log" >&2
			return 1
		}
	fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	tcpspool_setup
fi
