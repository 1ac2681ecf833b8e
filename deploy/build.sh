#!/usr/bin/env bash
# Build the redis-ha Docker images.
#
#   deploy/build.sh [--debug] [--no-cargo] [--env-file FILE] [--push REGISTRY] [--prune] [--force]
#
# Images (each tagged with a hash of exactly what it is built from, so a changed source is always
# a new tag and what runs is never silently stale):
#   redis-ha/redis:<hash>     Redis node          (deploy/docker/redis, target redis, + redis-ha-node)
#   redis-ha/sentinel:<hash>  Redis Sentinel      (deploy/docker/redis, target sentinel, + redis-ha-node)
#   redis-ha/haproxy:<hash>   HAProxy             (deploy/docker/haproxy + deploy/haproxy/)
#   redis-ha/sidecars:<hash>  redis-ha-agent, redis-ha-coordinator, redis-ha-reloader, redis-ha,
#                             redis-ha-chaos (what `redis-ha simulate` / `chaos` run)
#                             (deploy/docker/sidecars + the binaries built here with cargo)
# The hash covers the build context (names, modes, contents) and the base image's id. An image
# whose tag exists is not built again.
#
# Base image: debian:bookworm-slim, pulled when missing. When it cannot be pulled (no registry),
# it is made locally with debootstrap from the Debian mirror named in this machine's apt sources
# (debootstrap is installed with apt-get when missing).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

BASE_IMAGE=debian:bookworm-slim
DEBIAN_RELEASE=bookworm
IMAGE_PREFIX=redis-ha
BINARIES=(redis-ha-agent redis-ha-coordinator redis-ha-reloader redis-ha redis-ha-chaos)
# The start-up decision of the Redis and Sentinel images (services/node).
NODE_BINARIES=(redis-ha-node)
CARGO_PACKAGES=(redis-ha-agent redis-ha-coordinator redis-ha-reloader redis-ha-cli redis-ha-chaos redis-ha-node)

usage() {
    cat <<USAGE
usage: deploy/build.sh [options]

  --debug            put the debug binaries in the images (default: release)
  --no-cargo         do not run cargo; use the binaries already in the target directory
  --env-file FILE    write the image names as REDIS_HA_IMAGE_<NAME>=... lines to FILE
  --push REGISTRY    also tag the images REGISTRY/redis-ha/<name>:<hash> and push them there
                     (multi-node swarms: every node must be able to pull them); the env file
                     then names the pushed images
  --prune            remove older redis-ha/<name> tags that no container uses
  --force            build even when the tag exists (e.g. to pick up new Debian packages)
  -h, --help         this text
USAGE
}

PROFILE=release
CARGO=1
ENV_FILE=""
REGISTRY=""
PRUNE=0
FORCE=0

die() {
    echo "build.sh: $*" >&2
    exit 1
}

need_value() {
    [[ $# -ge 2 && -n $2 ]] || { echo "build.sh: $1 needs a value" >&2; usage >&2; exit 2; }
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --debug) PROFILE=debug ;;
        --release) PROFILE=release ;;
        --no-cargo) CARGO=0 ;;
        --env-file) need_value "$@"; ENV_FILE=$2; shift ;;
        --push) need_value "$@"; REGISTRY=${2%/}; shift ;;
        --prune) PRUNE=1 ;;
        --force) FORCE=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "build.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root (and sudo is not installed)"
    fi
}

# ------------------------------------------------------------------------------ base image

# Prints "URI SUITE" for every enabled deb entry of the apt sources (deb822 *.sources and
# one-line sources.list / *.list).
apt_source_entries() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
        {
            types = ""; uris = ""; suites = ""; enabled = "yes"
            for (i = 1; i <= NF; i++) {
                line = $i
                if (line ~ /^[[:space:]]*#/) continue
                key = tolower(line); sub(/:.*/, "", key)
                val = line; sub(/^[^:]*:[[:space:]]*/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
            }
            if (enabled == "no" || (" " types " ") !~ / deb /) next
            nu = split(uris, u, /[[:space:]]+/); ns = split(suites, s, /[[:space:]]+/)
            for (a = 1; a <= nu; a++) for (b = 1; b <= ns; b++) if (u[a] != "" && s[b] != "") print u[a], s[b]
        }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        awk '$1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if (i + 1 <= NF) print $i, $(i + 1)
        }' "$f"
    done
}

# Sets MIRROR (the Debian archive) and SECURITY_MIRROR (may stay empty) from the apt sources,
# preferring entries for bookworm itself. REDIS_HA_DEBIAN_MIRROR overrides.
find_mirror() {
    MIRROR=${REDIS_HA_DEBIAN_MIRROR:-}
    SECURITY_MIRROR=${REDIS_HA_DEBIAN_SECURITY_MIRROR:-}
    local entries uri suite
    entries=$(apt_source_entries | grep -E '^https?://' || true)
    if [[ -z $MIRROR ]]; then
        while read -r uri suite; do
            [[ $suite == "$DEBIAN_RELEASE" ]] && { MIRROR=$uri; break; }
        done <<<"$entries"
    fi
    if [[ -z $MIRROR ]]; then
        # Another Debian release on the host: its archive mirror serves bookworm too.
        while read -r uri suite; do
            [[ -n $suite && $suite != *-* && $suite != */* && $uri != *security* ]] && { MIRROR=$uri; break; }
        done <<<"$entries"
    fi
    if [[ -z $SECURITY_MIRROR ]]; then
        while read -r uri suite; do
            [[ $suite == *-security ]] && { SECURITY_MIRROR=$uri; break; }
        done <<<"$entries"
    fi
    [[ -n $MIRROR ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d/}; set REDIS_HA_DEBIAN_MIRROR"
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    echo "installing debootstrap (apt-get) ..."
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null; then
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null
    fi
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap could not be installed"
}

# Makes debian:bookworm-slim from a debootstrap minbase tree, trimmed like the official slim
# image (no docs, man pages or locales, now or in later installs).
debootstrap_base() {
    find_mirror
    ensure_debootstrap
    local root
    root=$(mktemp -d /var/tmp/redis-ha-rootfs.XXXXXX)
    # The tree is owned by root: removed as root, whatever happens.
    # shellcheck disable=SC2064
    trap "as_root rm -rf '$root'" EXIT
    echo "debootstrap --variant=minbase $DEBIAN_RELEASE from $MIRROR (about half a minute) ..."
    as_root debootstrap --variant=minbase "$DEBIAN_RELEASE" "$root" "$MIRROR" >"$root.log" 2>&1 ||
        { tail -n 20 "$root.log" >&2; die "debootstrap failed (log: $root.log)"; }
    rm -f "$root.log"
    {
        echo "deb $MIRROR $DEBIAN_RELEASE main"
        echo "deb $MIRROR $DEBIAN_RELEASE-updates main"
        [[ -z $SECURITY_MIRROR ]] || echo "deb $SECURITY_MIRROR $DEBIAN_RELEASE-security main"
    } | as_root tee "$root/etc/apt/sources.list" >/dev/null
    as_root tee "$root/etc/dpkg/dpkg.cfg.d/docker-slim" >/dev/null <<'DPKG'
# As in the official slim images: no documentation, manuals or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
DPKG
    as_root find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    as_root find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    as_root rm -rf "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale" \
        "$root/usr/share/groff" "$root/usr/share/lintian" "$root/var/cache/apt/"*.bin \
        "$root/var/lib/apt/lists/"* "$root/var/log/"*.log "$root/var/log/apt"
    as_root tar -C "$root" --numeric-owner -c . |
        docker import --change 'CMD ["bash"]' \
            --message "debootstrap --variant=minbase $DEBIAN_RELEASE $MIRROR (redis-ha deploy/build.sh)" \
            - "$BASE_IMAGE" >/dev/null
    as_root rm -rf "$root"
    trap - EXIT
    echo "created $BASE_IMAGE locally"
}

ensure_base_image() {
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
    echo "pulling $BASE_IMAGE ..."
    if timeout 300 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    echo "$BASE_IMAGE cannot be pulled here: making it with debootstrap"
    debootstrap_base
}

# ------------------------------------------------------------------------------ binaries

build_binaries() {
    local flags=(--bins) p
    [[ $PROFILE == release ]] && flags+=(--release)
    for p in "${CARGO_PACKAGES[@]}"; do
        flags+=(-p "$p")
    done
    if [[ $CARGO -eq 1 ]]; then
        command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) or pass --no-cargo"
        echo "cargo build ${flags[*]} ..."
        (cd "$REPO_ROOT" && cargo build "${flags[@]}") || die "cargo build failed"
    fi
    local target=${CARGO_TARGET_DIR:-}
    if [[ -z $target ]] && command -v cargo >/dev/null 2>&1; then
        target=$(cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
            sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    fi
    BIN_DIR="${target:-$REPO_ROOT/target}/$PROFILE"
    local b
    for b in "${BINARIES[@]}" "${NODE_BINARIES[@]}"; do
        [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b is missing (cargo build failed, or --no-cargo without a build)"
    done
}

# ------------------------------------------------------------------------------ images

STAGE=""
cleanup_stage() {
    [[ -z $STAGE ]] || rm -rf "$STAGE"
}

# The build contexts, each exactly what its image is made from.
stage_contexts() {
    STAGE=$(mktemp -d "${TMPDIR:-/tmp}/redis-ha-build.XXXXXX")
    trap cleanup_stage EXIT
    cp -a "$SCRIPT_DIR/docker/redis" "$STAGE/redis"
    cp -a "$SCRIPT_DIR/docker/haproxy" "$STAGE/haproxy"
    cp "$SCRIPT_DIR/haproxy/haproxy.cfg" "$STAGE/haproxy/haproxy.cfg"
    cp "$SCRIPT_DIR/haproxy/majority-guard.lua" "$STAGE/haproxy/majority-guard.lua"
    cp -a "$SCRIPT_DIR/docker/sidecars" "$STAGE/sidecars"
    mkdir -p "$STAGE/sidecars/bin" "$STAGE/redis/bin"
    local b
    for b in "${BINARIES[@]}"; do
        stage_binary "$b" "$STAGE/sidecars/bin"
    done
    for b in "${NODE_BINARIES[@]}"; do
        stage_binary "$b" "$STAGE/redis/bin"
    done
}

# stage_binary NAME DIR: the built binary NAME into DIR, without its debug sections (symbol
# names stay for backtraces): a much smaller image.
stage_binary() {
    local b=$1 dir=$2
    if command -v strip >/dev/null 2>&1; then
        strip --strip-debug -o "$dir/$b" "$BIN_DIR/$b"
    else
        cp "$BIN_DIR/$b" "$dir/$b"
    fi
    chmod 755 "$dir/$b"
}

# context_hash DIR EXTRA: 12 hex digits over every file's name, mode and content, and EXTRA.
context_hash() {
    local dir=$1 extra=$2
    {
        echo "$extra"
        (cd "$dir" && find . -type f -printf '%m %p\n' | LC_ALL=C sort)
        (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -c1-12
}

declare -A IMAGES=()

# build_image NAME CONTEXT [TARGET]
build_image() {
    local name=$1 ctx=$2 target=${3:-} hash tag args=()
    hash=$(context_hash "$ctx" "base=$BASE_ID target=$target")
    tag="$IMAGE_PREFIX/$name:$hash"
    IMAGES[$name]=$tag
    if [[ $FORCE -eq 0 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
        echo "$tag: up to date"
        return 0
    fi
    echo "building $tag ..."
    [[ -z $target ]] || args+=(--target "$target")
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/redis-ha-build-$name.XXXXXX")
    if ! docker build "${args[@]}" --label "redis-ha.inputs=$hash" -t "$tag" -f "$ctx/Dockerfile" "$ctx" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "docker build of $tag failed (full log: $log)"
    fi
    rm -f "$log"
}

push_images() {
    local name src dst
    for name in "${!IMAGES[@]}"; do
        src=${IMAGES[$name]}
        dst="$REGISTRY/$src"
        docker tag "$src" "$dst"
        echo "pushing $dst ..."
        docker push -q "$dst" >/dev/null || die "docker push $dst failed"
        IMAGES[$name]=$dst
    done
}

prune_images() {
    local name keep ref used
    used=$(docker ps -a --format '{{.Image}}')
    for name in "${!IMAGES[@]}"; do
        keep=${IMAGES[$name]##*/}
        while read -r ref; do
            [[ -n $ref && $ref != "$IMAGE_PREFIX/$keep" ]] || continue
            grep -qxF "$ref" <<<"$used" && continue
            if docker image rm "$ref" >/dev/null 2>&1; then echo "removed $ref"; fi
        done < <(docker image ls "$IMAGE_PREFIX/$name" --format '{{.Repository}}:{{.Tag}}')
    done
}

write_env() {
    local name upper out=""
    for name in redis sentinel haproxy sidecars; do
        upper=${name^^}
        out+="REDIS_HA_IMAGE_$upper=${IMAGES[$name]}"$'\n'
    done
    # deploy/stack/redis-ha.yml names the Redis and Sentinel images per node (a rolling
    # upgrade holds each node at its running one until its turn).
    local n
    for name in redis sentinel; do
        upper=${name^^}
        for n in 1 2 3; do
            out+="REDIS_HA_IMAGE_${upper}_$n=${IMAGES[$name]}"$'\n'
        done
    done
    if [[ -n $ENV_FILE ]]; then
        printf '%s' "$out" >"$ENV_FILE"
    fi
    printf '%s' "$out"
}

main() {
    command -v docker >/dev/null 2>&1 || die "docker not found"
    docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running, may this user use it?)"
    ensure_base_image
    BASE_ID=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")
    build_binaries
    stage_contexts
    build_image redis "$STAGE/redis" redis
    build_image sentinel "$STAGE/redis" sentinel
    build_image haproxy "$STAGE/haproxy"
    build_image sidecars "$STAGE/sidecars"
    [[ -z $REGISTRY ]] || push_images
    [[ $PRUNE -eq 0 ]] || prune_images
    write_env
}

main
