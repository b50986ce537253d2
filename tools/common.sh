# Shared by build.sh and the tools/*.sh it sources: logging, root, Debian packages, the test summary.
# Expects ROOT (the repository, symlinks resolved), CONFIG and TFM to be set by build.sh.

log() { printf '\033[1m[build.sh]\033[0m %s\n' "$*" >&2; }
die() { printf '[build.sh] error: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "needs root: $*"; fi; }

apt_install() {  # apt_install PKG...: installs Debian packages that are missing
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The folder of the `dotnet` on PATH, symlinks resolved (/usr/bin/dotnet -> /usr/share/dotnet/dotnet).
dotnet_root() { dirname "$(readlink -f "$(command -v dotnet)")"; }

# summarize_tests LOG RC: prints "N passed, N failed, N skipped" from a Microsoft Testing Platform log (its closing
# `total: / failed: / succeeded: / skipped:` block) and removes LOG. RC is the runner's exit code.
summarize_tests() {
    local total failed succeeded skipped
    # The runner colours its output when it detects CI (CI=true): drop the ANSI escapes before reading the counts.
    sed -i 's/\x1b\[[0-9;]*m//g' "$1"
    total="$(grep -Eo '^ *total: *[0-9]+' "$1" | tail -1 | grep -Eo '[0-9]+' || true)"
    failed="$(grep -Eo '^ *failed: *[0-9]+' "$1" | tail -1 | grep -Eo '[0-9]+' || true)"
    succeeded="$(grep -Eo '^ *succeeded: *[0-9]+' "$1" | tail -1 | grep -Eo '[0-9]+' || true)"
    skipped="$(grep -Eo '^ *skipped: *[0-9]+' "$1" | tail -1 | grep -Eo '[0-9]+' || true)"
    rm -f "$1"
    if [ -z "$total" ]; then
        echo "0 passed, 1 failed"
        log "the test runner printed no summary (exit code $2)"
        return 1
    fi
    echo "${succeeded:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
    # Exit code 8 means "no test ran" (e.g. a filter matching nothing): not a failure of the suite itself.
    [ "${failed:-0}" = 0 ] && { [ "$2" = 0 ] || [ "$2" = 8 ]; }
}
