#!/usr/bin/env bash
# demo.sh — the story in under a minute: a legacy server that gives up on a
# slow client, then the same server, unchanged, under tcpspool, then the
# server killed with SIGKILL in the middle while tcpspool daemon holds its
# connection.
#
# Sets up what a fresh Debian 12 machine lacks, builds into build/, then runs
# the server-A simulator (tests/fixtures/server_a) twice against a slow
# reader (tests/fixtures/slow_reader). Exits 0 only if the runs under
# tcpspool (acts 2 and 3) delivered every message, in order, then EOF.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
. scripts/setup.sh

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
step() { printf '  %s\n' "$*"; }

say "Setting up and building (first run only takes a while)"
tcpspool_setup
[ -f build/build.ninja ] || meson setup build >/dev/null
meson compile -C build >/dev/null
cli=$top/build/tools/tcpspool
server=$top/build/tests/fixtures/server_a
reader=$top/build/tests/fixtures/slow_reader

work=$(mktemp -d /tmp/tcpspool-demo.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

count=300000            # 28-byte messages: 8.4 MB, twice what the kernel absorbs
client=(--rcvbuf 4096 --read-size 1024 --pause-us 500 --send 16 --count "$count")

# Starts server_a (with any prefix command), waits for its port.
start_server() {
	rm -f "$work/port"
	"$@" "$server" --port-file "$work/port" --count "$count" --sndbuf 8192 \
		2>"$work/server.err" &
	pids+=($!)
	server_pid=$!
	for _ in $(seq 100); do
		[ -s "$work/port" ] && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "server did not start:" >&2
	cat "$work/server.err" >&2
	exit 1
}

# Prints the client's result line in plain words.
explain() {
	local line=$1 bytes end
	bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$line")
	end=$(sed -n 's/.*end=\([A-Z_]*\).*/\1/p' <<<"$line")
	step "client received $bytes of $((count * 28)) bytes, then: $end"
}

say "1/3  Without tcpspool"
step "server A writes $count messages in a tight loop on a non-blocking socket;"
step "the client reads 1 KiB every half millisecond through a 4 KiB window."
start_server
set +e
"$reader" --port "$(cat "$work/port")" "${client[@]}" 2>"$work/client1.err"
set -e
wait "$server_pid" 2>/dev/null || true
step "server A said: $(head -n 1 "$work/server.err")"
explain "$(tail -n 1 "$work/client1.err")"
step "-> the stream is cut short and the client dies with a reset (errno 104)."

say "2/3  The same server under tcpspool:  tcpspool run -- ./server_a"
start_server "$cli" run --dir "$work/spool" --linger 60s --
"$reader" --port "$(cat "$work/port")" "${client[@]}" 2>"$work/client2.err" &
reader_pid=$!
pids+=("$reader_pid")
for i in 1 2; do
	sleep 1
	step "tcpspool ls, while the client reads:"
	"$cli" ls --dir "$work/spool" | sed 's/^/      /'
done
stream=$("$cli" ls --dir "$work/spool" --json | sed -n 's/.*"stream": *"\([0-9a-f]*\)".*/\1/p' | head -n 1)
if [ -n "$stream" ]; then
	step "tcpspool dump $stream --count 3 (the oldest records not yet delivered):"
	"$cli" dump --dir "$work/spool" "$stream" --count 3 | sed 's/^/      /'
fi
set +e
wait "$reader_pid"
rc=$?
wait "$server_pid"
src=$?
set -e
step "server A exited with status $src (0: it never saw EAGAIN)"
explain "$(tail -n 1 "$work/client2.err")"
left=$(find "$work/spool" -mindepth 1 -maxdepth 1 | wc -l)
step "spool dir entries left after delivery: $left"
ok2=0
if [ "$rc" -eq 0 ] && [ "$src" -eq 0 ] && [ "$left" -eq 0 ]; then
	ok2=1
fi

say "3/3  kill -9 in the middle, with tcpspool daemon holding the connection"
step "tcpspool daemon --dir SPOOL &  (one per spool dir; a systemd unit in tools/systemd)"
spool3=$work/spool3
mkdir -m 700 "$spool3"
"$cli" daemon --dir "$spool3" 2>"$work/daemon.err" &
pids+=($!)
for _ in $(seq 100); do [ -S "$spool3/daemon.sock" ] && break; sleep 0.05; done
mkfifo "$work/never"
exec 7<>"$work/never"    # server A's resume gate: never opened
rm -f "$work/port"
"$cli" run --dir "$spool3" --linger 60s -- "$server" --port-file "$work/port" \
	--status-fd 9 --count 0 --pause-at "$count" --resume-fd 7 --sndbuf 8192 \
	9>"$work/status3" 2>"$work/server3.err" &
server_pid=$!
pids+=("$server_pid")
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
"$reader" --port "$(cat "$work/port")" "${client[@]}" 2>"$work/client3.err" &
reader_pid=$!
pids+=("$reader_pid")
for _ in $(seq 400); do grep -q '^paused' "$work/status3" && break; sleep 0.05; done
sleep 0.5    # the last writes reach the page cache (TCPSPOOL_FLUSH, 100 ms)
step "server A wrote all $count messages; most wait in the spool. tcpspool daemon --status:"
"$cli" daemon --status --dir "$spool3" | sed 's/^/      /'
child=$(cat "/proc/$server_pid/task/$server_pid/children" | awk '{print $1}')
step "kill -9 $child  (the child serving the connection)"
kill -9 "$child"
sleep 0.5
step "tcpspool ls: the daemon delivers the rest on the same connection"
"$cli" ls --dir "$spool3" | sed 's/^/      /'
set +e
wait "$reader_pid"
rc3=$?
set -e
kill "$server_pid" 2>/dev/null || true
step "daemon said: $(grep -m1 'continuing at byte' "$work/daemon.err" | sed 's/^tcpspool\[[0-9]*\]: info: //')"
explain "$(tail -n 1 "$work/client3.err")"

if [ "$ok2" -eq 1 ] && [ "$rc3" -eq 0 ]; then
	say "Every message arrived, in order, exactly once, then EOF — even across kill -9."
	echo
	echo "Run your own server the same way:"
	echo "  $cli run -- ./your_server"
	echo "  LD_PRELOAD=$top/build/preload/libtcpspool.so ./your_server"
	echo "  $cli daemon &    # delivery outlives the server"
	exit 0
fi
say "A run under tcpspool did not deliver everything (act 2: client $rc, server $src; act 3: client $rc3)."
cat "$work/client2.err" "$work/server.err" "$work/client3.err" "$work/daemon.err" >&2
exit 1
