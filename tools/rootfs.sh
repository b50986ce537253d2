#!/usr/bin/env bash
# The Debian 13 userland for TorchSharp processes on hosts whose libstdc++ is older than GCC 13's.
#
# TorchSharp 0.107's libLibTorchSharp.so needs GLIBCXX_3.4.32 (GCC >= 13). On older hosts (Debian 12) run_torch runs
# the process in a Debian 13 userland that ensure_rootfs creates once with debootstrap (needs root) and caches in
# ${SLOTHSHARP_ROOTFS:-~/.cache/slothsharp/trixie-rootfs}. On newer hosts run_torch runs the command directly.
#
# Sourced by build.sh. Run directly: tools/rootfs.sh run CMD...   (CMD through run_torch, from the current folder)
#                                     tools/rootfs.sh selftest      (a clone under /tmp reached through a symlink)

HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
ROOTFS="${SLOTHSHARP_ROOTFS:-$HOME/.cache/slothsharp/trixie-rootfs}"

host_libstdcxx_ok() {
    local lib
    lib="$(/sbin/ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/{print $NF; exit}')"
    [ -n "$lib" ] && grep -q GLIBCXX_3.4.32 "$lib"
}

ensure_rootfs() {
    [ -x "$ROOTFS/usr/bin/env" ] && [ -e "$ROOTFS/.slothsharp-ready" ] && return 0
    [ "$(id -u)" = 0 ] || die "TorchSharp needs a newer libstdc++ than this host has; creating the Debian 13 userland needs root (or set SLOTHSHARP_ROOTFS to an existing one)"
    apt_install debootstrap
    log "creating a Debian 13 userland for TorchSharp in $ROOTFS (once, ~1 min)"
    rm -rf "$ROOTFS.tmp"; mkdir -p "$(dirname "$ROOTFS")"
    debootstrap --variant=minbase --include=libicu76,libssl3t64,ca-certificates trixie "$ROOTFS.tmp" >/dev/null \
        || die "debootstrap failed; see $ROOTFS.tmp/debootstrap/debootstrap.log"
    touch "$ROOTFS.tmp/.slothsharp-ready"
    rm -rf "$ROOTFS"; mv "$ROOTFS.tmp" "$ROOTFS"
}

# run_torch CMD...: runs CMD (a dotnet process that loads TorchSharp) directly, or inside the Debian 13 userland.
# The chroot gets private bind mounts (gone when the command ends) of /tmp, $HOME (.NET tools installed there), the
# .NET install, the NuGet cache, the repository and the current folder, each at its host path with symlinks resolved. /tmp goes first, so a repository
# or folder under /tmp, mounted after it, stays visible. SLOTHSHARP_* and CI variables are passed through.
run_torch() {
    if host_libstdcxx_ok; then "$@"; return; fi
    ensure_rootfs
    local dn nuget wd
    dn="$(dotnet_root)"
    nuget="$(readlink -f "${NUGET_PACKAGES:-$HOME/.nuget/packages}")"
    wd="$(pwd -P)"
    local passed=() v
    while IFS= read -r v; do passed+=("$v=${!v}"); done < <(compgen -e | grep -E '^(SLOTHSHARP_[A-Z0-9_]+|CI)$' || true)
    unshare --mount --propagation private -- bash -s "$ROOTFS" "$dn" "$nuget" "$ROOT" "$wd" "${#passed[@]}" \
        "${passed[@]}" "$@" <<'INNER'
set -e
R=$1 DN=$2 NU=$3 REPO=$4 WD=$5 NV=$6; shift 6
VARS=("${@:1:$NV}"); shift "$NV"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"; mount --rbind /dev "$R/dev"
for d in /tmp "$HOME" "$DN" "$NU" "$REPO" "$WD"; do  # /tmp first: a later mount under /tmp stays visible
    [ -d "$d" ] && [ "$d" != / ] || continue
    mkdir -p "$R$d"; mount --bind "$d" "$R$d"
done
exec chroot "$R" /usr/bin/env -i PATH="$DN:/usr/bin:/bin" HOME="$HOME" DOTNET_ROOT="$DN" NUGET_PACKAGES="$NU" \
    DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1 TERM="${TERM:-dumb}" \
    "${VARS[@]}" /bin/bash -c 'cd "$0" && exec "$@"' "$WD" "$@"
INNER
}

# rootfs_selftest: what a user with a clone under /tmp, reached through a symlink, gets. A fresh clone in /tmp runs
# `./build.sh sloth` through its own build.sh (entered through the symlink) on a file in /tmp; the clone borrows
# this repository's built CLI and native library as hard links, so nothing is rebuilt. Needs ./build.sh build first.
rootfs_selftest() {
    local t bin="src/Cli/bin/$CONFIG/$TFM" lib="artifacts/native"
    [ -f "$ROOT/$bin/sloth.dll" ] && [ -d "$ROOT/$lib" ] || die "selftest needs the built CLI: run ./build.sh build first"
    t="$(mktemp -d /tmp/slothsharp-selftest.XXXXXX)"
    # shellcheck disable=SC2064  # expand $t now
    trap "rm -rf '$t'" RETURN
    git clone -q "$ROOT" "$t/clone"
    ln -s "$t/clone" "$t/link"
    for d in "$bin" "$lib"; do
        mkdir -p "$t/clone/$(dirname "$d")"
        cp -al "$ROOT/$d" "$t/clone/$d" 2>/dev/null || cp -a "$ROOT/$d" "$t/clone/$d"
    done
    cp "$ROOT/tests/data/bnb-nf4/bnb_nf4_small.safetensors" "$t/in.safetensors"
    log "selftest: clone in $t/clone, entered through the symlink $t/link"
    (cd "$t/link" && SLOTHSHARP_SKIP_BUILD=1 ./build.sh sloth info "$t/in.safetensors") > "$t/out.txt" 2>&1 \
        || { cat "$t/out.txt" >&2; die "selftest: ./build.sh sloth info in the clone failed"; }
    grep -q "1 NF4 weight" "$t/out.txt" || { cat "$t/out.txt" >&2; die "selftest: unexpected output of sloth info"; }
    log "selftest: ok (the clone, its working folder and a file in /tmp are visible to the TorchSharp process)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # run directly rather than sourced by build.sh
    set -euo pipefail
    ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)"
    CONFIG="${CONFIG:-Release}" TFM=net10.0
    # shellcheck source=tools/common.sh
    . "$ROOT/tools/common.sh"
    case "${1:-}" in
        run) shift; run_torch "$@" ;;
        selftest) rootfs_selftest ;;
        *) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
fi
