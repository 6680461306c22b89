#!/bin/bash
# wrapper.sh — a start-up script as people write them around a server, run
# by `tcpspool run -- wrapper.sh LOG_FILE SERVER [ARGS...]`: it keeps a log
# on a descriptor (a redirection: dup2), sends its own stderr there for a
# while, computes values with command substitutions and a pipeline (forks
# after the dups), restores its descriptors and execs the server, which
# inherits the library with the environment.
set -eu
log=$1
shift
exec 4>>"$log"
exec 5>&2 2>&4
started=$(date +%s)
kernel=$(uname -r | tr -d '\n')
nargs=$(printf '%s\n' "$@" | wc -l)
echo "wrapper: starting ${1##*/} with $nargs words at $started on $kernel" >&4
exec 2>&5 5>&- 4>&-
exec "$@"
