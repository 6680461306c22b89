#!/usr/bin/env bash
# package.sh — builds tcpspool_<version>_<arch>.deb with Debian's own tools
# (dpkg-buildpackage and debhelper, debian/ in the tree) from a clean copy
# of the committed tree, then runs lintian on it.
#   scripts/package.sh [OUTDIR]     (default: dist/)
# Prints the .deb's path on the last line. Exits non-zero if the build fails
# or lintian reports an error (warnings are printed, not fatal).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
out=${1:-$top/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)

for tool in dpkg-buildpackage dh lintian; do
	command -v "$tool" >/dev/null || {
		echo "package: $tool missing (scripts/setup.sh installs it)" >&2
		exit 1
	}
done

work=$(mktemp -d /tmp/tcpspool-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The committed tree plus the working copy's changes to tracked files:
# never build dirs, never untracked files.
src=$work/tcpspool
mkdir -p "$src"
git ls-files -z | xargs -0 cp --parents -t "$src"

(cd "$src" && dpkg-buildpackage -b -us -uc -j"$(nproc)") \
	>"$work/build.log" 2>&1 || {
	tail -n 40 "$work/build.log" >&2
	echo "package: dpkg-buildpackage failed" >&2
	exit 1
}
deb=$(ls "$work"/tcpspool_*.deb)
cp "$deb" "$out/"
deb=$out/$(basename "$deb")

lintian_out=$(lintian --tag-display-limit 0 "$deb" 2>&1 || true)
[ -n "$lintian_out" ] && printf '%s\n' "$lintian_out" >&2
if grep -q '^E: ' <<<"$lintian_out"; then
	echo "package: lintian reports errors" >&2
	exit 1
fi
echo "$deb"
