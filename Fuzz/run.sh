#!/usr/bin/env bash
# Builds the three libFuzzer targets and runs each for FUZZ_SECONDS (default 25) seconds,
# starting from the seeds in Fuzz/Corpus. Exits non-zero when a target crashes, traps,
# hangs or disagrees; the input that did it is kept in .build-fuzz/crashes/TARGET/.
# See Fuzz/README.md to run them longer.
set -euo pipefail
cd "$(dirname "$0")/.."

# The runtime's own crash handler would stop libFuzzer from saving the input.
export SWIFT_BACKTRACE=enable=no

seconds=${FUZZ_SECONDS:-25}
scratch=${FUZZ_SCRATCH:-.build-fuzz}
flags=(--package-path Fuzz --scratch-path "$scratch" -c release
       -Xswiftc -sanitize=fuzzer -Xcc -fsanitize=fuzzer-no-link -Xswiftc -use-ld=lld)

swift build "${flags[@]}"
bin=$(swift build "${flags[@]}" --show-bin-path)

status=0
for target in http:FuzzHTTP frames:FuzzFrames json:FuzzJSON; do
    name=${target%%:*}
    program=${target#*:}
    # New inputs go to a scratch corpus; the committed seeds are only read.
    work="$scratch/corpus/$name"
    crashes="$scratch/crashes/$name"
    mkdir -p "$work" "$crashes"
    options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$crashes/")
    if [[ -f "Fuzz/$name.dict" ]]; then options+=(-dict="Fuzz/$name.dict"); fi
    echo "== $program: $seconds s"
    log="$scratch/$name.log"
    set +e
    "$bin/$program" "${options[@]}" "$work" "Fuzz/Corpus/$name" > "$log" 2>&1
    status_here=$?
    set -e
    tail -n 25 "$log"
    if [[ $status_here -ne 0 ]]; then
        echo "fuzz: $program failed (exit $status_here); reproduce with: $bin/$program $crashes/<file>"
        status=1
    else
        echo "fuzz: $program ran $seconds s without a failure"
    fi
done
exit $status
