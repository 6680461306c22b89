#!/usr/bin/env bash
# demo.sh — the main job's entry point: sets up, builds, and shows tcpspool
# at work. (The live slow-client story joins when the server-A simulator and
# the CLI are complete; until then it builds and says how to run a program.)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
tcpspool_setup
if [ ! -f build/build.ninja ]; then
	meson setup build >/dev/null
fi
meson compile -C build >/dev/null
lib=$PWD/build/preload/libtcpspool.so
cli=$PWD/build/tools/tcpspool
echo "tcpspool is built:"
echo "  library: $lib"
echo "  command: $cli"
echo
echo "Run your server under the library, unchanged:"
echo "  LD_PRELOAD=$lib ./your_server"
echo "  $cli run -- ./your_server"
