#!/usr/bin/env bash
# Sets round 32's experimental decode switches (all landed off) in a copy of native/: r32-switches.sh NATIVE_DIR MODE.
# MODE: all (the five on), none (main's behaviour), noprep (all but the fused q/k preparation), early (the trigger on
# entry alone), prep (the fused q/k preparation alone). Prints each switch's line as set; exits 1 if one is missing.
set -uo pipefail
dir="${1:?usage: r32-switches.sh NATIVE_DIR MODE}" mode="${2:?mode: all|none|noprep|early|prep}"
early=false stagex=false prefetch=false keys=0 prep=false
case "$mode" in
    all) early=true stagex=true prefetch=true keys=64 prep=true ;;
    none) ;;
    noprep) early=true stagex=true prefetch=true keys=64 ;;
    early) early=true ;;
    prep) prep=true ;;
    *) echo "r32-switches: unknown mode $mode"; exit 1 ;;
esac
rc=0
set_switch() {  # FILE NAME TYPE VALUE (a file already set is left untouched: its time stamp too, for ninja)
    grep -q "^constexpr $3 $2 = $4;" "$dir/$1" || sed -i -E "s/^constexpr $3 $2 = [a-z0-9]+;/constexpr $3 $2 = $4;/" "$dir/$1"
    grep -q "^constexpr $3 $2 = $4;" "$dir/$1" || { echo "r32-switches: $2 not found in $1"; rc=1; }
}
set_switch cuda/cuda_common.cuh kEarlyDependentLaunch bool $early
set_switch cuda/nf4_gemv_tiles.cuh kTileStageX bool $stagex
set_switch cuda/nf4_gemv_tiles.cuh kTilePrefetchRest bool $prefetch
set_switch cuda/decode_attention_kernels.cuh kAttentionPrefetchKeys int64_t $keys
set_switch src/decode_kernels.h kDecodeFusedPrep bool $prep
echo "r32 switches $mode in $dir: early=$early stagex=$stagex prefetch=$prefetch keys=$keys prep=$prep"
exit $rc
