#!/usr/bin/env bash
# fuzz.sh [SECONDS] — builds the libFuzzer targets (clang, build-fuzz/ with
# -Dfuzz=true, the same setup scripts/test.sh uses) and runs each for
# SECONDS (default 60) over its seed corpus, then prints one row per target:
# executions, corpus size, findings (crash-, leak-, timeout-, oom- files
# libFuzzer left). Exit 0 only if every target ran and found nothing.
#
#   scripts/fuzz.sh 1800                      # the long run: 30 min each
#   TCPSPOOL_FUZZ_PARALLEL=1 scripts/fuzz.sh  # the targets side by side
#   TCPSPOOL_FUZZ_TARGETS=fuzz_config scripts/fuzz.sh 60
#   TCPSPOOL_FUZZ_BUILD=build-fuzz-x scripts/fuzz.sh   # another build dir
#
# Seeds are never written: new inputs go to BUILD/fuzz-run/TARGET/corpus,
# findings to BUILD/fuzz-run/TARGET/ (reproduce one with
# `BUILD/tests/fuzz/... FILE`), the fuzzer's log to .../log. The last line:
#   fuzz: PASS fuzz_segment=N execs fuzz_config=N execs (S s each)
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
case $seconds in
''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 64 ;;
esac
build=${TCPSPOOL_FUZZ_BUILD:-build-fuzz}
targets=${TCPSPOOL_FUZZ_TARGETS:-fuzz_segment fuzz_config}

if [ ! -f "$build/build.ninja" ]; then
	[ -f scripts/setup.sh ] && . scripts/setup.sh && tcpspool_setup
	CC=clang meson setup "$build" -Dfuzz=true -Dtests=true \
		-Db_lundef=false >"/tmp/fuzz-setup.$$.log" 2>&1 || {
		cat "/tmp/fuzz-setup.$$.log"; echo "fuzz: FAIL setup"; exit 1; }
	rm -f "/tmp/fuzz-setup.$$.log"
fi

# target -> (binary, seed corpus, extra libFuzzer flags)
declare -A bin seeds extra
bin[fuzz_segment]=$build/tests/fuzz/fuzz_segment
seeds[fuzz_segment]=tests/fuzz/corpus/segment
extra[fuzz_segment]=
bin[fuzz_config]=$build/tests/fuzz/config/fuzz_config
seeds[fuzz_config]=tests/fuzz/config/corpus
extra[fuzz_config]=-dict=tests/fuzz/config/config.dict

ninja_targets=()
for t in $targets; do
	[ -n "${bin[$t]:-}" ] || { echo "fuzz: unknown target $t" >&2; exit 64; }
	ninja_targets+=("${bin[$t]#"$build"/}")
done
ninja -C "$build" "${ninja_targets[@]}" >"/tmp/fuzz-build.$$.log" 2>&1 || {
	tail -n 40 "/tmp/fuzz-build.$$.log"; echo "fuzz: FAIL build"; exit 1; }
rm -f "/tmp/fuzz-build.$$.log"

run_one() {
	local t=$1 out=$build/fuzz-run/$1
	mkdir -p "$out/corpus"
	# -print_final_stats gives stat::number_of_executed_units at the end.
	# shellcheck disable=SC2086
	"${bin[$t]}" "$out/corpus" "${seeds[$t]}" ${extra[$t]} \
		-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$out/" \
		>"$out/log" 2>&1
	echo $? >"$out/rc"
}

start=$(date +%s)
for t in $targets; do
	rm -f "$build/fuzz-run/$t/rc"
	# Findings of an earlier run are kept, but not counted again.
	mkdir -p "$build/fuzz-run/$t/old"
	find "$build/fuzz-run/$t" -maxdepth 1 -type f \
		\( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
		-o -name 'oom-*' \) -exec mv -t "$build/fuzz-run/$t/old" {} + \
		2>/dev/null
done
if [ "${TCPSPOOL_FUZZ_PARALLEL:-0}" = 1 ]; then
	for t in $targets; do run_one "$t" & done
	wait
else
	for t in $targets; do run_one "$t"; done
fi

status=PASS
summary=
printf '%-14s %12s %10s %8s %6s %s\n' target executions exec/s corpus rc findings
for t in $targets; do
	out=$build/fuzz-run/$t
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/log" | tail -n 1)
	corpus=$(find "$out/corpus" -type f | wc -l)
	rc=$(cat "$out/rc" 2>/dev/null || echo '?')
	findings=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' \
		-o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) |
		sed "s|^$out/||" | tr '\n' ' ')
	printf '%-14s %12s %10s %8s %6s %s\n' "$t" "${execs:-?}" "${rate:-?}" \
		"$corpus" "$rc" "${findings:-none}"
	if [ "$rc" != 0 ] || [ -n "$findings" ] || [ -z "$execs" ]; then
		status=FAIL
		echo "  $t: see $out/log" >&2
		grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz_)' "$out/log" | head -n 5 >&2
	fi
	summary+=" $t=${execs:-?} execs"
done
echo "fuzz: $status$summary (${seconds} s each, $(( $(date +%s) - start )) s wall)"
[ "$status" = PASS ]
