#!/usr/bin/env bash
# bench.sh — what tcpspool costs and how far it carries, side by side with
# the kernel alone and a store-and-forward relay (issue 7).
#
#   scripts/bench.sh           full run (several minutes): prints the table
#                              and writes it, with the date and the machine,
#                              to tests/bench/RESULTS.md
#   scripts/bench.sh --smoke   about 10 s once built: every benchmark runs
#                              on little data, once; the table is printed,
#                              RESULTS.md is left alone. For CI: it fails
#                              only if a benchmark could not run, never on
#                              a time.
#
# Builds build-bench/ (-Dbuildtype=release). Every figure is a ratio against
# a reference measured in the same run, the median over repetitions with the
# min–max spread: the machine is shared and noisy, the ratios much less so.
# Spools go under /var/tmp (the local disk), into a private directory that
# is removed at the end, as is every process started here.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

smoke=0
case "${1:-}" in
--smoke) smoke=1 ;;
"") ;;
*) echo "usage: scripts/bench.sh [--smoke]" >&2; exit 2 ;;
esac

. scripts/setup.sh
tcpspool_setup
for p in socat mbuffer; do
	command -v "$p" >/dev/null 2>&1 || tcpspool_apt socat mbuffer
done

build=$root/build-bench
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" -Dbuildtype=release -Dbench=true >/dev/null
fi
ninja -C "$build" >/dev/null

work=$(mktemp -d /var/tmp/tcpspool-bench.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench=$build/tests/bench
fixtures=$build/tests/fixtures
lib=$build/preload/libtcpspool.so
rows=$work/rows
log=$work/log
: >"$rows"
start=$(date +%s)

# Runs a benchmark program, keeps its ROW| lines, shows the rest.
run() {
	local name=$1; shift
	echo "== $name" >&2
	if ! "$@" >"$work/out" 2>&1; then
		cat "$work/out" >&2
		echo "bench: $name failed" >&2
		exit 1
	fi
	cat "$work/out" >>"$log"
	grep -v '^ROW|' "$work/out" >&2 || true
	grep '^ROW|' "$work/out" >>"$rows" || true
}

# The library with a private spool dir and quotas that never bind unless a
# row sets its own; linger 0 so that a program's exit never waits.
under_lib() {
	env LD_PRELOAD="$lib" TCPSPOOL_DIR="$work/spool" TCPSPOOL_MAX=64G \
	    TCPSPOOL_MAX_STREAM=64G TCPSPOOL_MIN_FREE=1G TCPSPOOL_LINGER=0 "$@"
}

if [ "$smoke" -eq 1 ]; then
	ingest_args=(2 1 20000)
	store_mib=2
else
	ingest_args=(64 5 200000)
	store_mib=32
fi

run ingest under_lib "$bench/ingest_bench" "${ingest_args[@]}"

# Stored bytes: spool_bench, one data set at a time (deterministic sizes).
for k in 0 1 2; do
	echo "== stored bytes, data set $k" >&2
	TMPDIR=$work "$bench/spool_bench" "$store_mib" 1 "$k" >"$work/store.$k" ||
		{ echo "bench: spool_bench failed" >&2; exit 1; }
	awk -v k="$k" '
		/^\(/ { name = substr($0, 2, index($0, ")") - 2) }
		/^  stored/ {
			st = $2; gz = $7; r = $11; raw = $NF
			if (k == 2) {
				goal = "≤ 1.01x of raw"; ok = raw <= 1.01
				val = sprintf("%.3fx of raw, %.3fx gzip -1", raw, r)
			} else {
				goal = "≤ 1.10x"; ok = r <= 1.10
				val = sprintf("%.3fx (%.3fx of raw)", r, raw)
			}
			printf "ROW|stored bytes, %s|%d B|gzip -1: %d B|%s, deterministic|%s|%s\n",
			    name, st, gz, val, goal, ok ? "met" : "MISSED"
		}' "$work/store.$k" >>"$rows"
done

# The table.
elapsed=$(($(date +%s) - start))
table() {
	echo "| figure | measured | reference (same run) | ratio: median (min–max) | goal | |"
	echo "|---|---|---|---|---|---|"
	sed -e 's/|/ | /g' -e 's/^ROW | /| /' -e 's/$/ |/' -e 's/  */ /g' "$rows"
}
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
[ -n "$cpu" ] || cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
machine="$(nproc) cores, ${cpu:-unknown CPU}, Linux $(uname -r)"
echo
echo "tcpspool benchmarks, $(date -u +%Y-%m-%d), $machine"
table
echo
echo "bench: $([ "$smoke" -eq 1 ] && echo smoke || echo full) run took ${elapsed}s"

if [ "$smoke" -eq 0 ]; then
	{
		echo "# tcpspool benchmark results"
		echo
		echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $machine, commit"
		echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown), by \`scripts/bench.sh\` (${elapsed} s)."
		echo "Each ratio is against a reference measured in the same run;"
		echo "the median over the repetitions, the min–max spread in brackets."
		echo
		table
		if [ -f tests/bench/NOTES.md ]; then
			echo
			cat tests/bench/NOTES.md
		fi
	} >tests/bench/RESULTS.md
	echo "bench: wrote tests/bench/RESULTS.md"
fi
