#!/usr/bin/env bash
# demo.sh — the story in about a minute, in four acts:
#   1. a legacy server that gives up on a slow client (the reset of the story);
#   2. the same server, unchanged, under tcpspool: every message, then EOF;
#   3. the server killed with SIGKILL in the middle while tcpspool daemon
#      holds its connection: still every message;
#   4. resume (--resume peer-addr): the client crashes with messages still
#      spooled for it, `tcpspool ls` shows the spool waiting for it, and when
#      it comes back from the same address it gets the old connection's
#      pending messages first, from a message boundary, then the new
#      connection's own; it says which messages were lost with the old
#      connection's kernel buffers.
#
# Sets up what a fresh Debian 12 machine lacks, builds into build/, then runs
# the server-A simulator (tests/fixtures/server_a) against a slow reader
# (tests/fixtures/slow_reader). Exits 0 only if acts 2 to 4 did what they
# show (act 1 shows the failure tcpspool is for).
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

# Runs "$@" every 50 ms until it succeeds, for at most SECS seconds; then
# says what it waited for and fails. Usage: wait_for SECS WHAT COMMAND...
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 20; i++)); do
		"$@" && return 0
		sleep 0.05
	done
	echo "demo: no $what after ${secs}s" >&2
	return 1
}

# A field of a slow_reader result line or a status line: field NAME LINE.
field() {
	sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

# Prints the client's result line in plain words.
explain() {
	local line=$1 bytes end
	bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$line")
	end=$(sed -n 's/.*end=\([A-Z_]*\).*/\1/p' <<<"$line")
	step "client received $bytes of $((count * 28)) bytes, then: $end"
}

say "1/4  Without tcpspool"
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

say "2/4  The same server under tcpspool:  tcpspool run -- ./server_a"
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

say "3/4  kill -9 in the middle, with tcpspool daemon holding the connection"
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

say "4/4  The client crashes and comes back:  tcpspool run --resume peer-addr -- ./server_a"
step "server A serves two connections, a child each; each child writes all $count"
step "messages, closes its socket and stays (--end close-hold) until the demo ends."
spool4=$work/spool4
mkfifo "$work/start4" "$work/hold4"
# Two gates, opened by writing a byte: the client's first read (4) and
# the children's exit (5).
exec 4<>"$work/start4" 5<>"$work/hold4"
rm -f "$work/port"
"$cli" run --dir "$spool4" --linger 60s --resume peer-addr -- "$server" \
	--port-file "$work/port" --status-fd 9 --connections 2 \
	--count "$count" --sndbuf 8192 --sndbuf-conns 1 \
	--end close-hold --resume-fd 5 \
	9>"$work/status4" 2>"$work/server4.err" &
server_pid=$!
pids+=("$server_pid")
crash_at=$((50000 * 28))
ok4=0 rc4a=- rc4b=- src4=-
if wait_for 10 "port from server A" test -s "$work/port"; then
	port=$(cat "$work/port")
	"$reader" --port "$port" --rcvbuf 4096 --read-size 1024 --pause-us 500 \
		--count "$count" --reset-after "$crash_at" --start-fd 4 \
		2>"$work/client4a.err" &
	reader_pid=$!
	pids+=("$reader_pid")
	if wait_for 60 "\"done conn=0\" from server A" \
	    grep -q '^done conn=0 ' "$work/status4"; then
		sndbuf=$(field bytes "$(grep -m1 '^sndbuf conn=0 ' "$work/status4")")
		step "server A wrote all $count messages on the first connection: what did not fit"
		step "in its $sndbuf-byte send buffer is in the spool."
		step "The client reads slowly, then crashes after about $((crash_at / 1024)) KiB: its socket is reset."
		echo go >&4
		set +e
		wait "$reader_pid"
		rc4a=$?
		set -e
		crashed=$(tail -n 1 "$work/client4a.err")
	fi
fi
ls_shows_waiting() {
	grep -q waiting <<<"$("$cli" ls --dir "$spool4" 2>&1)"
}
spool4_empty() {
	[ -z "$("$cli" ls --dir "$spool4" 2>&1)" ]
}
if [ "$rc4a" = 0 ] && wait_for 10 "waiting stream in tcpspool ls" ls_shows_waiting; then
	step "tcpspool ls: the spool waits for the client's address"
	"$cli" ls --dir "$spool4" | sed 's/^/      /'
	step "The client comes back from 127.0.0.1 (reading at full speed this time)."
	set +e
	"$reader" --port "$port" --read-size 65536 --count "$count" --resumed \
		2>"$work/client4b.err"
	rc4b=$?
	set -e
	back=$(tail -n 1 "$work/client4b.err")
	echo go >&5
	set +e
	wait "$server_pid"
	src4=$?
	set -e
	read_msgs=$(field messages "$crashed")
	read_bytes=$(field bytes "$crashed")
	from=$(field resumed_from "$back")
	step "What happened:"
	torn=$((read_bytes - read_msgs * 28))
	if [ "$torn" -gt 0 ]; then
		step "- the crashed client had read $read_msgs whole messages (seq 1 to $read_msgs)"
		step "  and the first $torn bytes of seq $((read_msgs + 1))"
	else
		step "- the crashed client had read $read_msgs messages (seq 1 to $read_msgs)"
	fi
	if [ "$rc4b" -eq 0 ]; then
		step "- back, it got seq $from to $count first, from the old connection's spool: the"
		step "  resumed stream started at a message boundary, with a whole message;"
		step "- then the new connection's own messages, seq 1 to $count, then EOF"
		if [ "$from" -gt $((read_msgs + 1)) ]; then
			lost=$((from - read_msgs - 1))
			step "- seq $((read_msgs + 1)) to $((from - 1)) ($lost messages, $((lost * 28)) bytes) never reached it: the"
			step "  kernel had taken them on the old connection (server A's send buffer, the"
			step "  client's receive buffer, unread) and they are lost with that connection."
			step "  The spool holds only what the kernel refused (README, \"When the client"
			step "  comes back\"); a protocol that needs every message needs its own acks."
		elif [ "$from" -eq $((read_msgs + 1)) ]; then
			step "- nothing was lost between the two connections"
		else
			step "- seq $from to $read_msgs arrived again (a record partly delivered is sent again whole)"
		fi
	fi
	if [ "$rc4b" -eq 0 ] && [ "$src4" -eq 0 ] &&
	    wait_for 10 "empty spool dir" spool4_empty; then
		step "tcpspool ls: nothing left in the spool dir"
		ok4=1
	fi
fi

if [ "$ok2" -eq 1 ] && [ "$rc3" -eq 0 ] && [ "$ok4" -eq 1 ]; then
	say "Every message arrived, in order, exactly once, then EOF — even across kill -9."
	step "And a client that crashed got what was spooled for it first when it came back."
	echo
	echo "Run your own server the same way:"
	echo "  $cli run -- ./your_server"
	echo "  LD_PRELOAD=$top/build/preload/libtcpspool.so ./your_server"
	echo "  $cli daemon &    # delivery outlives the server"
	echo "  $cli run --resume peer-addr -- ./your_server    # a client that comes back gets its spool"
	exit 0
fi
say "A run under tcpspool did not do what it shows (act 2: client $rc, server $src; act 3: client $rc3; act 4: crashing client $rc4a, returning client $rc4b, server $src4)."
for f in client2.err server.err client3.err daemon.err status4 server4.err client4a.err client4b.err; do
	[ -s "$work/$f" ] && { echo "== $f" >&2; cat "$work/$f" >&2; }
done
exit 1
