#!/usr/bin/env bash
# install_test.sh — the Debian package end to end (issue 17 item 1):
# builds tcpspool_*.deb (scripts/package.sh), installs it with apt-get,
# runs the server-A scenario with the INSTALLED library, resolved by the
# loader from the bare name (LD_PRELOAD=libtcpspool.so) and the installed
# CLI, then removes the package. Needs root; run by scripts/test.sh after
# the meson suites (never in parallel with them: the system's library path
# changes while the package is installed).
#   tests/package/install_test.sh BUILD_DIR   (its fixtures: server_a,
#                                              slow_reader)
# Exit: 0 passed, 1 failed, 77 skipped (not root, no apt-get, or a tcpspool
# package already installed: never replaced or removed here).
set -uo pipefail
cd "$(dirname "$0")/../.."
build=$(cd "${1:-build}" && pwd)
server=$build/tests/fixtures/server_a
reader=$build/tests/fixtures/slow_reader

skip() { echo "package test skipped: $*"; exit 77; }
fail() { echo "package test FAILED: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
command -v apt-get >/dev/null || skip "no apt-get"
if dpkg-query -W -f='${Status}' tcpspool 2>/dev/null | grep -q 'ok installed'; then
	skip "a tcpspool package is already installed; left alone"
fi
[ -x "$server" ] && [ -x "$reader" ] || fail "fixtures missing in $build"

work=$(mktemp -d /tmp/tcpspool-pkgtest.XXXXXX)
installed=0
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	# Whatever happened, the machine is left without the package.
	if [ "$installed" -eq 1 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq tcpspool \
			>>"$work/apt.log" 2>&1 || echo "package test: could not remove tcpspool" >&2
	fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

deb=$(scripts/package.sh "$work/dist" 2>"$work/package.err" | tail -n 1) ||
	{ cat "$work/package.err" >&2; fail "scripts/package.sh"; }
[ -f "$deb" ] || { cat "$work/package.err" >&2; fail "no .deb built"; }
echo "built $(basename "$deb"); lintian:"
grep -E '^[EW]: ' "$work/package.err" | sed 's/^/  /'

installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >"$work/apt.log" 2>&1 ||
	{ cat "$work/apt.log" >&2; fail "apt-get install"; }
[ "$(command -v tcpspool)" = /usr/bin/tcpspool ] || fail "tcpspool not on PATH"
ldconfig -p | grep -q 'libtcpspool.so ' || fail "libtcpspool.so not in the loader's cache"
# tcpspool run finds the installed library by itself.
tcpspool run -n --dir "$work/spool" -- /bin/true | grep -q '/usr/lib/.*/libtcpspool.so' ||
	fail "tcpspool run does not find the installed library"
man -w tcpspool >/dev/null 2>&1 || [ -f /usr/share/man/man1/tcpspool.1.gz ] ||
	fail "tcpspool(1) not installed"
# The daemon's unit (one instance per spool dir) and the example drop-in.
dpkg -L tcpspool | grep -qx '/usr/lib/systemd/system/tcpspool@.service' ||
	fail "tcpspool@.service not in the package"
dpkg -L tcpspool | grep -q '/usr/share/doc/tcpspool/tcpspool-preload.conf.example' ||
	fail "the example drop-in is not in the package"

# The story: server A writes 300000 messages in a tight loop; the client
# waits a second, then reads slowly. Under the installed library every
# message arrives, in order, then EOF.
count=300000
LD_PRELOAD=libtcpspool.so TCPSPOOL_DIR=$work/spool TCPSPOOL_LINGER=120s \
	"$server" --port-file "$work/port" --count "$count" --sndbuf 8192 \
	2>"$work/server.err" &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 200); do
	[ -s "$work/port" ] && break
	kill -0 "$server_pid" 2>/dev/null || break
	sleep 0.05
done
[ -s "$work/port" ] || { cat "$work/server.err" >&2; fail "server_a did not start"; }
"$reader" --port "$(cat "$work/port")" --rcvbuf 4096 --read-size 2048 \
	--pause-us 200 --stall-ms 1000 --send 16 --count "$count" \
	--result-file "$work/result" 2>"$work/reader.err" &
reader_pid=$!
pids+=("$reader_pid")
# While the client stalls, the installed CLI sees the stream.
seen=0
for _ in $(seq 200); do
	if tcpspool ls --json --dir "$work/spool" 2>/dev/null | grep -q '"alive":true'; then
		seen=1
		break
	fi
	kill -0 "$reader_pid" 2>/dev/null || break
	sleep 0.05
done
tcpspool metrics --dir "$work/spool" >"$work/metrics.prom" || fail "tcpspool metrics"
wait "$reader_pid"
wait "$server_pid"
server_rc=$?
result=$(cat "$work/result" 2>/dev/null)
echo "client: $result"
grep -q 'complete=1' <<<"$result" && grep -q 'end=EOF' <<<"$result" ||
	{ cat "$work/server.err" >&2; fail "the stream was not delivered whole"; }
[ "$server_rc" -eq 0 ] || { cat "$work/server.err" >&2; fail "server_a exited $server_rc"; }
[ "$seen" -eq 1 ] || fail "tcpspool ls never showed the spooling stream"
grep -q '^tcpspool_streams{' "$work/metrics.prom" || fail "metrics output"

installed=0
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq tcpspool >>"$work/apt.log" 2>&1 ||
	{ installed=1; fail "apt-get purge"; }
[ ! -e /usr/bin/tcpspool ] && ! ldconfig -p | grep -q 'libtcpspool.so ' ||
	fail "files left after removal"
echo "package test passed"
