#!/usr/bin/env bash
# Build every fuzz target and run each one briefly (one at a time, one job):
# a smoke test for CI (scripts/test-all). The long runs are in docs/fuzzing.md.
#
#   fuzz/run-short.sh [TARGET...]     (default: all targets)
#   FUZZ_SECONDS=12                   seconds per target
#
# Installs what it needs: the nightly toolchain (rustup) and cargo-fuzz.
# Exits non-zero if any target fails; a crashing input is left in
# fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run -s none <target> <file>).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
secs=${FUZZ_SECONDS:-12}

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# -s none: the code under test is safe Rust; overflow checks and debug
# assertions stay on (cargo-fuzz's default), ASan would only slow it down.
echo "fuzz: building ${#targets[@]} targets"
blog=$(mktemp)
cargo +nightly fuzz build -s none >"$blog" 2>&1 || {
    cat "$blog"; echo "fuzz: BUILD FAILED"; exit 1; }
rm -f "$blog"

failed=0
summary=()
for t in "${targets[@]}"; do
    # Inputs longer than the structure add nothing but time.
    case $t in
        completion | pci_address | fio_units) max_len=256 ;;
        log_pages | vfio_caps | pat_list) max_len=1024 ;;
        job_file) max_len=2048 ;;
        *) max_len=4096 ;;
    esac
    mkdir -p "corpus/$t"
    log=$(mktemp)
    start=$(date +%s)
    # One fuzzing process in the foreground (libFuzzer's default; with
    # -jobs=1 it would run the same single job in a child logging to
    # ./fuzz-0.log).
    if cargo +nightly fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -max_len="$max_len" -malloc_limit_mb=256 \
        -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed=$((failed + 1))
    fi
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    line="fuzz $t: $status, ${execs:-?} execs in ${took} s, corpus $corpus"
    if [ "$status" = FAILED ]; then
        # The panic message or libFuzzer's verdict, not cargo-fuzz's backtrace.
        grep -E -A4 "panicked at|ERROR: libFuzzer" "$log" | grep -vE "^ +[0-9]+: |^ +at " | head -20
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        line="$line, crash input ${art:-(none written)}"
    fi
    echo "$line"
    summary+=("$line")
    rm -f "$log"
    # The job_file target's private directory (named by the fuzzer's pid).
    for d in /dev/shm/nvme-fuzz-job-file.* "${TMPDIR:-/tmp}"/nvme-fuzz-job-file.*; do
        [ -d "$d" ] || continue
        kill -0 "${d##*.}" 2>/dev/null || rm -rf "$d"
    done
done

echo "fuzz: summary"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "fuzz: $failed of ${#targets[@]} targets FAILED"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ok (${secs} s each)"
