#!/usr/bin/env bash
# test.sh — sets up, builds and runs the whole suite:
#   1. build/        the normal build (-Werror): every suite
#   2. build-asan/   ASan+UBSan: every suite (the library is preloaded after
#                    the sanitizer runtime)
#   3. build-tsan/   TSan: the tests in suite 'concurrency'
#   4. build-fuzz/   clang libFuzzer targets, each for a short bounded run
#                    (suite 'fuzz'; TCPSPOOL_FUZZ_SECONDS, default 15)
#   5. build-bench/  release build, scripts/bench.sh --smoke: every
#                    benchmark still runs (no timing is asserted)
#   6. the Debian package: tests/package/install_test.sh (root only)
# Exits non-zero on any failure. The last line is the summary:
#   tests: N passed, N failed
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
tcpspool_setup || { echo "tests: 0 passed, 1 failed"; exit 1; }

passed=0
failed=0
log_dir=$(mktemp -d /tmp/tcpspool-test.XXXXXX)

# Adds the counts of one `meson test` run (its testlog.json) to the totals.
count_run() {
	local build=$1 p f
	read -r p f < <(python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
ok = bad = 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    t = json.loads(line)
    if t.get("result") in ("SKIP",):
        continue
    good = t.get("result") in ("OK", "EXPECTEDFAIL")
    # A TAP test carries one line per test case in its stdout.
    sub_ok = sum(1 for l in t.get("stdout", "").splitlines() if l.startswith("ok ") and "# SKIP" not in l)
    sub_bad = sum(1 for l in t.get("stdout", "").splitlines() if l.startswith("not ok "))
    out = t.get("stdout", "").splitlines()
    for i, l in enumerate(out):
        if l.startswith("not ok "):
            # The failed case and its TAP diagnostics, for the reader.
            sys.stderr.write("   %s: %s\n" % (t.get("name"), l))
            for d in out[i + 1:i + 12]:
                if not d.startswith("  ") and not d.startswith("#"):
                    break
                sys.stderr.write("      %s\n" % d)
    if sub_ok + sub_bad == 0:
        ok += good; bad += not good
    else:
        ok += sub_ok; bad += sub_bad + (0 if good or sub_bad else 1)
print(ok, bad)
PY
)
	passed=$((passed + p))
	failed=$((failed + f))
}

# step NAME BUILD_DIR SETUP_ARGS... -- TEST_ARGS...
step() {
	local name=$1 build=$2; shift 2
	local setup=() targs=()
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do setup+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	targs=("$@")
	echo "== $name ($build)"
	if [ ! -f "$build/build.ninja" ]; then
		meson setup "$build" "${setup[@]}" >"$log_dir/$name.setup.log" 2>&1 || {
			cat "$log_dir/$name.setup.log"; failed=$((failed + 1)); return; }
	else
		meson configure "$build" "${setup[@]}" >/dev/null 2>&1 || true
	fi
	meson compile -C "$build" >"$log_dir/$name.build.log" 2>&1 || {
		tail -n 60 "$log_dir/$name.build.log"; failed=$((failed + 1)); return; }
	meson test -C "$build" --print-errorlogs --num-processes 2 "${targs[@]}" \
		>"$log_dir/$name.test.log" 2>&1
	if grep -q '^No suitable tests defined' "$log_dir/$name.test.log"; then
		echo "   (no tests in this selection yet)"
		return
	fi
	grep -E '^ *[0-9]+/[0-9]+ ' "$log_dir/$name.test.log" | sed 's/^/   /'
	if grep -qE '^(Fail|Timeout|Unexpected Pass): *[1-9]' "$log_dir/$name.test.log"; then
		# The failing tests' own output, as meson printed it.
		sed -n '/^>>> /,/^―*$/p' "$log_dir/$name.test.log" | head -n 300
	fi
	count_run "$build"
}

start=$(date +%s)
step normal build -Dwerror=true --
step asan build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false --
step tsan build-tsan -Db_sanitize=thread -Db_lundef=false -- --suite concurrency
if [ "${TCPSPOOL_SKIP_FUZZ:-0}" != 1 ]; then
	CC=clang step fuzz build-fuzz -Dfuzz=true -Dtests=true -Db_lundef=false -- --suite fuzz
fi
# The benchmarks still run (a smoke run, never a timed assertion).
echo "== bench smoke (build-bench)"
if scripts/bench.sh --smoke >"$log_dir/bench.log" 2>&1; then
	echo "   bench smoke OK"
	passed=$((passed + 1))
else
	tail -n 30 "$log_dir/bench.log" | sed 's/^/   /'
	failed=$((failed + 1))
fi
# The Debian package: built, installed, the server-A scenario run with the
# installed library, removed (root only; skipped, not counted, otherwise).
echo "== package (scripts/package.sh, apt-get install, server A, remove)"
tests/package/install_test.sh build >"$log_dir/package.log" 2>&1
case $? in
0)	sed 's/^/   /' "$log_dir/package.log" | grep -E 'lintian|^   +[EW]:|passed'
	passed=$((passed + 1)) ;;
77)	sed 's/^/   /' "$log_dir/package.log" ;;
*)	tail -n 30 "$log_dir/package.log" | sed 's/^/   /'
	failed=$((failed + 1)) ;;
esac
echo "== logs in $log_dir; $(( $(date +%s) - start )) s"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
