#!/usr/bin/env bash
# Round 21, call 6 (issue 25), chained: call 5's racecheck stopped on a sanitizer internal error ("failed to handle a
# hardware exception") in DecoderSizedProjectionMatches (k = 8192: the 16-warp tile kernel); racecheck again on the
# 8-warp tiles alone (k = 256), then on both widths (4096, 8192) of EachRowHasTheSameBitsAtAnyBatch.
set -uo pipefail
OUT="${1:?usage: lease-r21f.sh OUTDIR}"
. "$(dirname "$0")/common.sh"
racecheck racecheck-k256 80 "Name~MatchesDequantizeThenMatmul"
racecheck racecheck-rows 100 "Name~EachRowHasTheSameBitsAtAnyBatch"
grep -E "^failed|Internal Sanitizer|Race reported|Hazard" "$OUT/racecheck-rows.log" | head -10
