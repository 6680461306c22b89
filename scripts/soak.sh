#!/usr/bin/env bash
# soak.sh [SECONDS] — server A under libtcpspool with many slow, stalling
# and misbehaving clients, in rounds, until SECONDS (default 600) are up.
#
# Each round: server_a (fork per connection, 4 KiB send buffers, so every
# connection spools) serves 20 concurrent slow_readers that read at
# different rates (512 B..8 KiB per read, 0..5 ms between reads), some
# stalling before their first read, some stopped mid-stream for seconds
# (SIGSTOP, then SIGCONT), and 3 resetting the connection mid-stream
# (--reset-after). Beside the rounds, one long-lived server_a --no-fork
# (the "host") serves one slow reader after another for the whole soak:
# its process lives through every connection, so a leak of fds or memory
# in the library accumulates there and shows.
#
# Checks: every surviving client's stream is byte-exact and complete, then
# EOF; every resetting client's is an exact prefix; server_a's children end
# 0, or 4 (a write failed after the reset: the library hands the peer's
# error back) for at most the resetting connections; the host's open fds
# are back to their first value after every connection and its RSS grows
# by less than 4 MiB from its first connection to its last; at the end the
# spool dir holds nothing but orphans left by resets (the library keeps
# the undelivered rest of a reset stream on disk, by design: FORMAT.md §7,
# `tcpspool ls` shows them with their reason), each of which verifies
# clean and is then removed with `tcpspool rm --orphans`; then the dir
# must be empty.
#
# The build: with TCPSPOOL_FIXTURE_DIR, TCPSPOOL_TEST_PRELOAD and
# TCPSPOOL_TEST_CLI set (meson test does), those binaries; otherwise
# build-soak/ is set up and built here. Under a sanitizer build
# (TCPSPOOL_TEST_SANITIZE other than none) it exits 77 (meson: skipped):
# memory figures mean nothing there.
#
# Output: one line per round, then a summary table; the last line is
#   soak: PASS clients=N messages=N bytes=N minutes=M faults=N lost=0 ...
# Figures over time (RSS, fds, spool dir size) are in WORK/samples.tsv;
# TCPSPOOL_SOAK_KEEP=1 keeps WORK (printed at the end) on success too.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
case $seconds in
''|*[!0-9]*) echo "usage: scripts/soak.sh [SECONDS]" >&2; exit 64 ;;
esac

sanitize=${TCPSPOOL_TEST_SANITIZE:-none}
if [ "$sanitize" != none ] && [ -n "$sanitize" ]; then
	echo "soak: SKIP under -Db_sanitize=$sanitize (RSS figures are meaningless)"
	exit 77
fi

if [ -n "${TCPSPOOL_FIXTURE_DIR:-}" ] && [ -n "${TCPSPOOL_TEST_PRELOAD:-}" ] &&
   [ -n "${TCPSPOOL_TEST_CLI:-}" ]; then
	fixtures=$TCPSPOOL_FIXTURE_DIR
	preload=$TCPSPOOL_TEST_PRELOAD
	cli=$TCPSPOOL_TEST_CLI
else
	build=${TCPSPOOL_SOAK_BUILD:-build-soak}
	if [ ! -f "$build/build.ninja" ]; then
		[ -f scripts/setup.sh ] && . scripts/setup.sh && tcpspool_setup
		meson setup "$build" -Dbench=false >/dev/null || {
			echo "soak: FAIL meson setup $build"; exit 1; }
	fi
	ninja -C "$build" preload/libtcpspool.so tools/tcpspool \
		tests/fixtures/server_a tests/fixtures/slow_reader >/dev/null || {
		echo "soak: FAIL build"; exit 1; }
	fixtures=$PWD/$build/tests/fixtures
	preload=$PWD/$build/preload/libtcpspool.so
	cli=$PWD/$build/tools/tcpspool
fi

work=$(mktemp -d /tmp/tcpspool-soak.XXXXXX)
spool=$work/spool
mkdir -m 0700 "$spool"
export TCPSPOOL_DIR=$spool
# Test-only variables would be unknown names to the library.
unset TCPSPOOL_TEST_PRELOAD TCPSPOOL_TEST_LIB TCPSPOOL_TEST_CLI \
	TCPSPOOL_FIXTURE_DIR TCPSPOOL_TEST_SANITIZE
lib_env=(env "LD_PRELOAD=$preload" "TCPSPOOL_DIR=$spool"
	TCPSPOOL_LINGER=30s TCPSPOOL_MAX_STREAM=256M)

CLIENTS=20
RESETS=3		# readers 0..2 reset mid-stream
COUNT=${TCPSPOOL_SOAK_COUNT:-50000}	# messages per connection
SIZE=28
HOST_COUNT=20000
pids=()

fail() {
	echo "soak: $*" >&2
	failed=1
}

cleanup() {
	local p
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	if [ "${failed:-0}" = 0 ] && [ "${TCPSPOOL_SOAK_KEEP:-0}" != 1 ]; then
		rm -rf "$work"
	else
		echo "soak: work dir kept: $work" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until file $1 exists and is non-empty (a bounded retry on the
# condition: the only thing to wait on is the file).
wait_file() {
	local i
	for ((i = 0; i < 3000; i++)); do
		[ -s "$1" ] && return 0
		sleep 0.01
	done
	return 1
}

# Sum of VmRSS (KiB) and of open fds over the given pids; "- -" if none.
proc_figures() {
	local rss=0 fds=0 p r
	for p in "$@"; do
		r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
		[ -n "$r" ] || continue
		rss=$((rss + r))
		fds=$((fds + $(ls "/proc/$p/fd" 2>/dev/null | wc -l)))
	done
	echo "$rss $fds"
}

# ------------------------------------------------------------ the host
host_status=$work/host.status
"${lib_env[@]}" "$fixtures/server_a" --no-fork --connections=1000000 \
	--count=$HOST_COUNT --sndbuf=4096 --status-fd=3 \
	--port-file="$work/host.port" 3>"$host_status" 2>"$work/host.err" &
host_pid=$!
pids+=("$host_pid")
wait_file "$work/host.port" || { fail "the host announced no port"; exit 1; }
host_port=$(cat "$work/host.port")

host_sockets() {
	local n=0 f
	for f in /proc/"$host_pid"/fd/*; do
		[[ $(readlink "$f" 2>/dev/null) == socket:* ]] && n=$((n + 1))
	done
	echo "$n"
}

# One slow reader after another against the host, in the background;
# after each, the host's fds and RSS once its side is done.
host_loop() {
	local n=0 r rc
	while [ ! -e "$work/stop" ]; do
		r=$work/host-reader-$n.result
		"$fixtures/slow_reader" --port="$host_port" --rcvbuf=4096 \
			--read-size=$(( (n % 3 + 1) * 1024 )) --pause-us=$(( n % 4 * 300 )) \
			--count=$HOST_COUNT --size=$SIZE --result-file="$r" \
			2>/dev/null
		rc=$?
		echo "$n $rc $(cat "$r" 2>/dev/null)" >>"$work/host.readers"
		# The host's side of this connection is over when its only
		# socket is the listener again: the connection and the
		# library's private duplicate are closed (bounded retry).
		for ((i = 0; i < 1000; i++)); do
			[ "$(host_sockets)" = 1 ] && break
			sleep 0.02
		done
		echo "$n $(proc_figures "$host_pid")" >>"$work/host.figures"
		n=$((n + 1))
	done
}
host_loop &
host_loop_pid=$!
pids+=("$host_loop_pid")

# ------------------------------------------------------------ sampling
sampler() {
	local t0 now kids
	t0=$(date +%s)
	echo -e "t\tserver_rss_kib\tserver_fds\thost_rss_kib\thost_fds\tspool_bytes" \
		>"$work/samples.tsv"
	while [ ! -e "$work/stop" ]; do
		now=$(( $(date +%s) - t0 ))
		kids=()
		if [ -s "$work/round.pid" ]; then
			local sp
			sp=$(cat "$work/round.pid")
			kids=("$sp" $(cat "/proc/$sp/task/$sp/children" 2>/dev/null))
		fi
		read -r srss sfds <<<"$(proc_figures "${kids[@]}")"
		read -r hrss hfds <<<"$(proc_figures "$host_pid")"
		sb=$(du -sb "$spool" 2>/dev/null | cut -f1)
		echo -e "$now\t$srss\t$sfds\t$hrss\t$hfds\t${sb:-0}" >>"$work/samples.tsv"
		sleep 1
	done
}
sampler &
sampler_pid=$!
pids+=("$sampler_pid")

# ------------------------------------------------------------ rounds
start=$(date +%s)
round=0
clients=0 messages=0 bytes=0 faults=0 lost=0 mismatches=0
resets_seen=0

run_round() {
	local dir=$work/round-$round status port i args rp sp rc
	mkdir -p "$dir"
	status=$dir/status
	"${lib_env[@]}" "$fixtures/server_a" --connections=$CLIENTS \
		--count=$COUNT --size=$SIZE --sndbuf=4096 --status-fd=3 \
		--port-file="$dir/port" 3>"$status" 2>"$dir/server.err" &
	sp=$!
	pids+=("$sp")
	echo "$sp" >"$work/round.pid"
	wait_file "$dir/port" || { fail "round $round: no port"; return; }
	port=$(cat "$dir/port")
	local readers=()
	for ((i = 0; i < CLIENTS; i++)); do
		args=(--port="$port" --rcvbuf=4096 --count=$COUNT --size=$SIZE
			--result-file="$dir/reader-$i.result"
			--read-size=$(( 512 << (i % 3 * 2) ))
			--pause-us=$(( (i + round) % 4 * 1000 + (i % 2) * 200 )))
		# Stalls before the first read: 0..3 s.
		[ $((i % 5)) = 3 ] && args+=(--stall-ms=$(( (i + round) % 4 * 1000 )))
		if [ "$i" -lt "$RESETS" ]; then
			args+=(--reset-after=$(( (i + 1) * 300000 + round * 7 )))
		fi
		"$fixtures/slow_reader" "${args[@]}" 2>"$dir/reader-$i.err" &
		readers+=("$!")
		pids+=("$!")
	done
	# Readers 5, 10, 15 are stopped mid-stream for 2..4 s, then resume.
	(
		sleep 1
		for i in 5 10 15; do kill -STOP "${readers[$i]}" 2>/dev/null; done
		sleep $(( 2 + round % 3 ))
		for i in 5 10 15; do kill -CONT "${readers[$i]}" 2>/dev/null; done
	) &
	local stopper=$!
	for ((i = 0; i < CLIENTS; i++)); do
		wait "${readers[$i]}"
		echo $? >"$dir/reader-$i.rc"
	done
	wait "$stopper"
	wait "$sp"
	rc=$?
	: >"$work/round.pid"

	# Per-reader checks.
	local r b m mm complete end rrc bad=0 expect=$((COUNT * SIZE))
	local rmsg=0 rbytes=0
	for ((i = 0; i < CLIENTS; i++)); do
		r=$(cat "$dir/reader-$i.result" 2>/dev/null)
		rrc=$(cat "$dir/reader-$i.rc")
		b=$(sed -n 's/.*bytes=\([0-9-]*\).*/\1/p' <<<"$r")
		m=$(sed -n 's/.*messages=\([0-9-]*\).*/\1/p' <<<"$r")
		mm=$(sed -n 's/.*mismatch=\([0-9-]*\).*/\1/p' <<<"$r")
		end=$(sed -n 's/.*end=\([A-Z_]*\).*/\1/p' <<<"$r")
		if [ -z "$b" ] || [ "$rrc" != 0 ] || [ "$mm" != -1 ]; then
			fail "round $round reader $i: rc=$rrc $r $(tail -c 300 "$dir/reader-$i.err")"
			bad=$((bad + 1))
			[ -n "$mm" ] && [ "$mm" != -1 ] && mismatches=$((mismatches + 1))
		fi
		if [ "$i" -ge "$RESETS" ] && { [ "${b:-0}" != "$expect" ] || [ "$end" != EOF ]; }; then
			fail "round $round reader $i: $b of $expect bytes, end $end"
			lost=$((lost + expect - ${b:-0}))
			bad=$((bad + 1))
		fi
		rmsg=$((rmsg + ${m:-0}))
		rbytes=$((rbytes + ${b:-0}))
	done
	# Children: 0, or 4 for a connection whose peer reset.
	local nonzero
	nonzero=$(grep -c '^child conn=[0-9]* code=[^0]' "$status")
	if grep -q '^child conn=[0-9]* code=\([1-35-9]\|4[0-9]\)' "$status" ||
	   [ "$nonzero" -gt "$RESETS" ] || { [ "$rc" != 0 ] && [ "$rc" != 4 ]; }; then
		fail "round $round: server_a exit $rc; children: $(grep '^child' "$status" | grep -v 'code=0$' | tr '\n' ' ')"
		bad=$((bad + 1))
	fi
	resets_seen=$((resets_seen + RESETS))
	clients=$((clients + CLIENTS))
	messages=$((messages + rmsg))
	bytes=$((bytes + rbytes))
	faults=$((faults + RESETS + 3 + $(( CLIENTS / 5 )) ))
	printf 'round %3d: %2d clients, %8d messages, %10d bytes, server exit %d, %d problems (%d s)\n' \
		"$round" "$CLIENTS" "$rmsg" "$rbytes" "$rc" "$bad" $(( $(date +%s) - start ))
}

failed=0
while :; do
	run_round
	round=$((round + 1))
	[ $(( $(date +%s) - start )) -ge "$seconds" ] && break
done
elapsed=$(( $(date +%s) - start ))
touch "$work/stop"
wait "$host_loop_pid" "$sampler_pid"

# ------------------------------------------------------------ the host
host_conns=$(wc -l <"$work/host.readers" 2>/dev/null || echo 0)
host_bad=$(awk '$2 != 0 || $0 !~ /complete=1/' "$work/host.readers" | wc -l)
[ "$host_bad" = 0 ] || fail "host readers failed: $(awk '$2 != 0 || $0 !~ /complete=1/' "$work/host.readers" | head -3)"
host_msgs=$(sed -n 's/.*messages=\([0-9]*\).*/\1/p' "$work/host.readers" | awk '{ s += $1 } END { print s + 0 }')
host_bytes=$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' "$work/host.readers" | awk '{ s += $1 } END { print s + 0 }')
read -r _ hrss0 hfds0 <<<"$(head -n 1 "$work/host.figures")"
read -r _ hrss1 hfds1 <<<"$(tail -n 1 "$work/host.figures")"
host_peak_rss=$(awk 'NR > 1 && $4 > m { m = $4 } END { print m + 0 }' "$work/samples.tsv")
if [ "$host_conns" -ge 2 ]; then
	[ "$hfds1" = "$hfds0" ] || fail "host fds: $hfds0 after its first connection, $hfds1 after its last ($host_conns)"
	[ $((hrss1 - hrss0)) -lt 4096 ] || fail "host RSS grew from $hrss0 KiB to $hrss1 KiB over $host_conns connections"
fi
{ kill -KILL "$host_pid"; wait "$host_pid"; } 2>/dev/null

# ------------------------------------------------------------ the spool dir
# Only orphans of reset connections may remain; they verify clean.
"$cli" ls --json --dir "$spool" >"$work/ls.json" 2>&1
orphans=$(grep -c '"stream"' "$work/ls.json")
not_reset=$(grep '"stream"' "$work/ls.json" | grep -vc -e 'reset' -e 'broken pipe')
[ "$not_reset" = 0 ] || fail "streams left that no reset explains: $(grep '"stream"' "$work/ls.json" | grep -v -e reset -e 'broken pipe' | head -3)"
[ "$orphans" -le "$resets_seen" ] || fail "$orphans orphans for $resets_seen resets"
if [ "$orphans" -gt 0 ]; then
	"$cli" verify --dir "$spool" >"$work/verify.out" 2>&1 ||
		fail "verify of the reset orphans: $(tail -n 3 "$work/verify.out")"
	"$cli" rm --orphans --dir "$spool" >/dev/null 2>&1 || fail "tcpspool rm --orphans failed"
fi
left=$(find "$spool" -mindepth 1 | wc -l)
[ "$left" = 0 ] || fail "spool dir not empty at the end: $(find "$spool" -mindepth 1 | head -5 | tr '\n' ' ')"

peak_srss=$(awk 'NR > 1 && $2 > m { m = $2 } END { print m + 0 }' "$work/samples.tsv")
peak_sfds=$(awk 'NR > 1 && $3 > m { m = $3 } END { print m + 0 }' "$work/samples.tsv")
peak_spool=$(awk 'NR > 1 && $6 > m { m = $6 } END { print m + 0 }' "$work/samples.tsv")
sanitizer=$(cat "$work"/round-*/server.err "$work/host.err" 2>/dev/null | grep -c -e 'ERROR: AddressSanitizer' -e 'runtime error:' \
	-e 'WARNING: ThreadSanitizer')
clients=$((clients + host_conns))
messages=$((messages + host_msgs))
bytes=$((bytes + host_bytes))
minutes=$(awk -v s="$elapsed" 'BEGIN { printf "%.1f", s / 60 }')

echo
printf '%-44s %s\n' "rounds (20 concurrent clients each)" "$round"
printf '%-44s %s\n' "clients (rounds + host's sequential)" "$clients"
printf '%-44s %s\n' "messages received" "$messages"
printf '%-44s %s\n' "bytes received" "$bytes"
printf '%-44s %s\n' "minutes" "$minutes"
printf '%-44s %s\n' "faults (resets, stops, stalls)" "$faults"
printf '%-44s %s\n' "bytes lost" "$lost"
printf '%-44s %s\n' "streams reordered/corrupted (mismatch)" "$mismatches"
printf '%-44s %s\n' "orphans left by resets (verified, removed)" "$orphans"
printf '%-44s %s\n' "peak RSS, server_a of a round (all procs)" "${peak_srss} KiB"
printf '%-44s %s\n' "peak fds, server_a of a round (all procs)" "$peak_sfds"
printf '%-44s %s\n' "peak spool dir size" "$peak_spool bytes"
printf '%-44s %s\n' "host RSS first/last connection" "${hrss0:-?} / ${hrss1:-?} KiB (peak ${host_peak_rss} KiB)"
printf '%-44s %s\n' "host fds first/last connection" "${hfds0:-?} / ${hfds1:-?}"
printf '%-44s %s\n' "sanitizer reports" "$sanitizer"
[ "$sanitizer" = 0 ] || fail "sanitizer reports in server_a's stderr"

verdict=PASS
[ "$failed" = 0 ] || verdict=FAIL
echo "soak: $verdict clients=$clients messages=$messages bytes=$bytes minutes=$minutes faults=$faults lost=$lost reordered=$mismatches host_fds=${hfds0:-?}->${hfds1:-?} host_rss_kib=${hrss0:-?}->${hrss1:-?}"
[ "$verdict" = PASS ]
