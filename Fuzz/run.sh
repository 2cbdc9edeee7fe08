#!/usr/bin/env bash
# Builds the three libFuzzer harnesses (ASan) and fuzzes each for SECONDS (default 60) from a generated seed corpus:
#
#   image_decoder   Sources/CImageCodecs over its libpng/libjpeg, clang -fsanitize=fuzzer,address
#   safetensors     SafeTensorsFile.parse + reads (PatchGuardCore), swiftc -sanitize=fuzzer,address
#   config          JobConfig.tree/decode/validate and --set (PatchGuardJobs), swiftc -sanitize=fuzzer,address
#
# Usage: Fuzz/run.sh [SECONDS] [HARNESS…]   e.g. Fuzz/run.sh 600 config
# Output under .build-fuzz/: the binaries, corpus-<harness>/ (kept between runs), crash-* reproducers, and
# summary.txt (executions, coverage, crashes per harness). Exit status 1 when a harness found a crash.
# A reproducer reruns with: .build-fuzz/fuzz-<harness> CRASH_FILE
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_HARNESS="${1:-60}"; shift || true
HARNESSES=("${@:-image_decoder safetensors config}")
HARNESSES=(${HARNESSES[@]})
OUT=.build-fuzz
CLANG="${CLANG:-$(dirname "$(readlink -f "$(command -v swift)")")/clang}"
[ -x "$CLANG" ] || CLANG=clang
mkdir -p "$OUT"

# 1. The C harness over the codecs (the system libpng/libjpeg are not instrumented: coverage is of codecs.c).
"$CLANG" -g -O1 -fuse-ld=lld -fsanitize=fuzzer,address -I Sources/CImageCodecs/include \
  Sources/CImageCodecs/codecs.c Fuzz/image_decoder.c -lpng -ljpeg -o "$OUT/fuzz-image_decoder"
"$CLANG" -O1 -I Sources/CImageCodecs/include Sources/CImageCodecs/codecs.c Fuzz/make_seeds.c -lpng -ljpeg \
  -o "$OUT/make_seeds"

# 2. The Swift modules with coverage and ASan, then each Swift harness linked against their objects.
swift build --scratch-path "$OUT/spm" --target PatchGuardJobs \
  -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address 2>&1 | grep -v "^\[" || true
BIN="$OUT/spm/debug"
OBJS=$(find "$BIN"/{PatchGuardCore,PatchGuardImage,PatchGuardMetrics,PatchGuardKernels,PatchGuardNN,PatchGuardData,PatchGuardMethod,PatchGuardJobs,RealModule,ComplexModule,Numerics,CImageCodecs,CVectorMath,CGemmBF16}.build -name '*.o' | sort)
for h in safetensors config; do
  src=Fuzz/SafeTensorsFuzz.swift; [ "$h" = config ] && src=Fuzz/ConfigFuzz.swift
  swiftc -g -sanitize=fuzzer,address -parse-as-library -use-ld=lld -I "$BIN/Modules" \
    -Xcc -fmodule-map-file=Sources/CBLAS/module.modulemap \
    -Xcc -fmodule-map-file="$BIN/CImageCodecs.build/module.modulemap" -Xcc -ISources/CImageCodecs/include \
    -Xcc -fmodule-map-file="$BIN/CVectorMath.build/module.modulemap" -Xcc -ISources/CVectorMath/include \
    -Xcc -fmodule-map-file="$BIN/CGemmBF16.build/module.modulemap" -Xcc -ISources/CGemmBF16/include \
    -Xcc -fmodule-map-file="$OUT/spm/checkouts/swift-numerics/Sources/_NumericsShims/include/module.modulemap" \
    "$src" $OBJS -lopenblas -lpng -ljpeg -o "$OUT/fuzz-$h" 2>&1 | grep -v "Cannot export local symbol" || true
done

# 3. Seeds: generated images, the shipped configs, a tiny checkpoint-like safetensors file.
mkdir -p "$OUT/seeds-image_decoder" "$OUT/seeds-config" "$OUT/seeds-safetensors"
"$OUT/make_seeds" "$OUT/seeds-image_decoder"
cp Configs/*.json "$OUT/seeds-config/"
printf 'train.epochs=5' > "$OUT/seeds-config/set1"
printf 'attack.epsilon=8/255' > "$OUT/seeds-config/set2"
header='{"__metadata__":{"epoch":"1"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[1,2],"data_offsets":[8,12]}}'
printf "$(printf '\\x%02x' ${#header})\\0\\0\\0\\0\\0\\0\\0%s\\0\\0\\x80\\x3f\\0\\0\\0\\x40\\0\\x3c\\0\\x40" "$header" \
  > "$OUT/seeds-safetensors/tiny.safetensors"

# 4. Fuzz each for the time given; summarise executions, coverage and crashes.
status=0
: > "$OUT/summary.txt"
for h in "${HARNESSES[@]}"; do
  mkdir -p "$OUT/corpus-$h"
  log="$OUT/fuzz-$h.log"
  set +e
  "$OUT/fuzz-$h" -max_total_time="$SECONDS_PER_HARNESS" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$OUT/crash-$h-" "$OUT/corpus-$h" "$OUT/seeds-$h" > "$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -oE '(DONE|pulse|NEW|REDUCE|INITED) +cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+)/\1 edges, \2 features/')
  crashes=$(find "$OUT" -maxdepth 1 -name "crash-$h-*" | wc -l)
  line="$h: ${execs} executions in ${SECONDS_PER_HARNESS} s, coverage ${cov:-?}, corpus $(ls "$OUT/corpus-$h" | wc -l) files, crashes ${crashes} (exit ${rc})"
  echo "$line" | tee -a "$OUT/summary.txt"
  if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then status=1; tail -40 "$log"; fi
done
exit $status
