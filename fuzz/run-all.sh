#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 120) each, one after the other, at the lowest
# priority; new inputs go to fuzz/corpus/<target>, crashes to fuzz/artifacts/<target>.
#   fuzz/run-all.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-120}
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then mapfile -t targets < <(cargo fuzz list); fi
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    echo "==> $t for ${secs}s"
    RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run -O "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 || echo "==> $t FAILED"
done
