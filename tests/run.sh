#!/usr/bin/env bash
# The test command (README "Test"): installs what the tests need on a fresh Debian machine, then
# runs formatting, lint (cargo clippy, shellcheck) and the whole test suite. CI (.ci/run) calls exactly this.
#
#   tests/run.sh            everything
#   tests/run.sh -- ARGS    extra arguments for `cargo nextest run` (e.g. a test name filter)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# REDIS_HA_SKIP_STACK_TESTS=1 skips the stack tests on a developer's machine without Docker.
# CI must run them: refused there before anything else runs.
skip_stack=0
case "${REDIS_HA_SKIP_STACK_TESTS:-}" in
    1 | true | TRUE | True) skip_stack=1 ;;
esac
ci=0
if [ -n "${CI:-}" ] && [ "${CI}" != 0 ] && [ "${CI}" != false ]; then ci=1; fi
if [ "$skip_stack" = 1 ] && [ "$ci" = 1 ]; then
    echo "tests/run.sh: REDIS_HA_SKIP_STACK_TESTS is set while CI is set: CI must run the stack tests" >&2
    exit 2
fi

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "tests/run.sh: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

# Debian packages the process tests start for real.
need_pkgs=()
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-sentinel >/dev/null || need_pkgs+=(redis-sentinel)
command -v haproxy >/dev/null || need_pkgs+=(haproxy)
command -v redis-benchmark >/dev/null || need_pkgs+=(redis-tools)
# The partition test cuts a node off on loopback with it (tests/kit/src/partition.rs).
{ command -v iptables || [ -x /usr/sbin/iptables ]; } >/dev/null || need_pkgs+=(iptables)
# The lint of the shell scripts below.
command -v shellcheck >/dev/null || need_pkgs+=(shellcheck)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    # The packages start system services on 6379/26379/80 on install: they are not ours.
    # A policy-rc.d that says "no" keeps them from starting at all.
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        created_policy=1
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
    [ "$created_policy" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
    for svc in redis-server redis-sentinel haproxy; do
        as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
    done
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

# A CI machine builds once: incremental compilation would only add its caches (about 2 GB here)
# to a disk that the stack and multi-node tests' images also need.
if [ "$ci" = 1 ]; then export CARGO_INCREMENTAL=0; fi

# Free space where the build and the Docker engines write: printed before the steps that need it,
# so that a "no space left on device" comes with the figures.
disk() { df -h / /var/lib/docker "${TMPDIR:-/tmp}" 2>/dev/null | awk 'NR == 1 || !seen[$1]++' || true; }

log "cargo fmt --check"
cargo fmt --all --check

# Every shell script of deploy/, tests/ and .ci/, NUL-separated: the *.sh files, and the files
# without an extension whose first line names a shell (.ci/run). The files git tracks when this
# is a checkout (not a run directory's leftovers), else every file there.
shell_scripts() {
    local f name first re='^#!.*[/ ](ba|da)?sh( |$)'
    {
        if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
            git ls-files -z deploy tests .ci
        else
            find deploy tests .ci -type f -print0
        fi
    } | while IFS= read -r -d '' f; do
        [[ -f $f ]] || continue # tracked, but deleted in this working tree
        name=${f##*/}
        case $name in
            *.sh) printf '%s\0' "$f" ;;
            *.*) ;;
            *)
                first=""
                IFS= read -r first <"$f" || true
                if [[ $first =~ $re ]]; then printf '%s\0' "$f"; fi
                ;;
        esac
    done
}

log "shellcheck"
mapfile -d '' scripts < <(shell_scripts)
# -x: follow the `source`d libraries (their `# shellcheck source=` paths are from the repo root).
shellcheck -x "${scripts[@]}"
echo "${#scripts[@]} scripts clean"

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The fuzz targets (fuzz/, a workspace of its own: README "Fuzzing") must keep compiling.
# `cargo check` (about a minute) reuses what clippy just checked; a full `cargo fuzz build`
# rebuilds every dependency with libFuzzer's instrumentation (about 12 minutes on a 2-core
# machine), too slow for every run: the README says how to build and run them.
log "fuzz targets: cargo fmt --check, cargo check"
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo check --manifest-path fuzz/Cargo.toml --bins --locked
# Under CI nothing builds the fuzz targets again: their check's output (about 700 MB) goes.
if [ "$ci" = 1 ]; then rm -rf fuzz/target; fi

log "tests"
extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi
# The process tests first; then the stack tests (tests/tests/stack.rs and stack_readers.rs, `#[ignore]`d so that a
# plain `cargo nextest run` lists them as skipped), which deploy the real swarm stack through
# deploy/up.sh (it initialises a swarm and builds the images, debootstrapping a base image when
# none can be pulled) and need a running Docker engine. Without one they fail with a clear
# message; REDIS_HA_SKIP_STACK_TESTS=1 skips them (developers only, refused under CI above).
status=0
cargo nextest run --workspace --locked --no-fail-fast --profile ci \
    -E 'not binary(stack) and not binary(stack_readers) and not binary(multinode)' "${extra[@]}" || status=$?
if [ "$skip_stack" = 1 ]; then
    log "stack tests SKIPPED (REDIS_HA_SKIP_STACK_TESTS is set): this run did not test the stack"
else
    # A run stopped before its teardown (a killed CI step or session) may have left a rig in the
    # swarm, its managers dead and the swarm without a leader: every Docker test would fail.
    log "leftovers of an earlier multi-node run"
    cargo run -q -p redis-ha-tests --bin remove-leftovers --locked || status=$?
    log "stack tests"
    disk
    cargo nextest run -p redis-ha-tests --test stack --test stack_readers --test upgrade --run-ignored ignored-only \
        --locked --no-fail-fast --profile ci --no-tests=pass "${extra[@]}" || status=$?
    # The multi-node tests (tests/tests/multinode.rs): a rig of extra dockerds in network
    # namespaces joined to this swarm (root needed). Then the check that none of them left
    # anything (it also removes what a test killed by its timeout left).
    log "multi-node tests"
    disk
    cargo nextest run -p redis-ha-tests --test multinode --run-ignored ignored-only --locked --no-fail-fast \
        --profile ci --no-tests=pass -E 'not test(rig_leftovers_are_none)' \
        "${extra[@]}" || status=$?
    cargo nextest run -p redis-ha-tests --test multinode --run-ignored ignored-only --locked \
        --profile ci --no-tests=pass -E 'test(rig_leftovers_are_none)' || status=$?
fi
exit "$status"
