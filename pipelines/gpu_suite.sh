#!/usr/bin/env bash
# Every GPU benchmark and GPU correctness check of genomix in one call of a lent GPU, each under its own
# time cap, results under $OUT/<name>/ and a log per step (so a step that overruns loses nothing else).
#
#   OUT=/tmp/gpu-results bash pipelines/gpu_suite.sh            # from the repository root, with a CUDA GPU
#
# The order is the order of importance; STEPS="pretrain m2" runs a subset. Exits 1 when a step failed or ran
# past its cap, 2 without a CUDA GPU or with an unknown step name (before anything runs).
set -u
case "${1:-}" in -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;; esac
: "${OUT:?set OUT to a results folder}"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
ALL_STEPS="hyena_forward hyena_paths pretrain pretrain_triton conv norm fftconv_cufft scan fftconv profile m2 generation scoring"
STEPS="${STEPS:-$ALL_STEPS}"
for name in $STEPS; do
  case " $ALL_STEPS " in *" $name "*) ;; *) echo "gpu_suite.sh: unknown step '$name' in STEPS; steps: $ALL_STEPS" >&2; exit 2 ;; esac
done
python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu_suite.sh: needs a CUDA GPU, and torch sees none here; run it on a GPU machine" >&2; exit 2; }
failed=0
# Full kernel checks and tables beyond the variant runs: kernels/gpu_check_scan.py, kernels/gpu_check_fftconv.py,
# kernels/bench_scan.py and kernels/bench_fftconv.py (several minutes each).
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,temperature.gpu --format=csv > "$OUT/gpu.csv" 2>&1

step() {  # step NAME SECONDS COMMAND...
    local name=$1 cap=$2; shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    mkdir -p "$OUT/$name"
    local start=$SECONDS
    timeout "$cap" "$@" > "$OUT/$name/log.txt" 2>&1
    local rc=$?
    [ "$rc" -eq 0 ] || failed=1
    echo "== $name: rc=$rc in $((SECONDS - start)) s (cap $cap s)" | tee -a "$OUT/summary.txt"
    tail -n 25 "$OUT/$name/log.txt" >> "$OUT/summary.txt"
}

step hyena_forward 75 python pipelines/bench_hyena_forward.py --model hyenadna-large-1m \
    --lengths 262144 1048576 --repeats 5 --out "$OUT/hyena_forward"
step hyena_paths 60 python pipelines/gpu_check_hyena_paths.py --length 1048576 --out "$OUT/hyena_paths"
step pretrain 140 python pipelines/bench_pretrain.py --model hyenadna-large-1m \
    --seq-len 1048576 --max-len 4194304 --memory-limit-gib 79 --out "$OUT/pretrain"
step pretrain_triton 50 env GENOMIX_TRITON_OPS=fftconv python pipelines/bench_pretrain.py --model hyenadna-large-1m \
    --seq-len 1048576 --max-len 1048576 --memory-limit-gib 79 --out "$OUT/pretrain_triton"
step conv 150 bash -c "python kernels/gpu_check_causal_conv.py --out '$OUT/conv' && python kernels/bench_causal_conv.py --out '$OUT/conv'"
step norm 100 python kernels/bench_layer_norm.py --out "$OUT/norm"
step fftconv_cufft 170 bash -c "python kernels/gpu_check_fftconv.py --path cufft --out '$OUT/fftconv_cufft' && python kernels/bench_fftconv.py --path cufft --breakdown 0 --out '$OUT/fftconv_cufft'"
step scan 130 python kernels/gpu_scan_variants.py --budget-s 105 --out "$OUT/scan"
step fftconv 150 python kernels/gpu_fftconv_variants.py --out "$OUT/fftconv"
step profile 55 python pipelines/profile_model.py --model hyenadna-large-1m --length 1048576 --out "$OUT/profile"
step m2 70 python pipelines/bench_m2.py --models m2 m2-ref transformer --out "$OUT/m2"
step generation 120 python pipelines/bench_generation.py --out "$OUT/generation"
step scoring 90 python pipelines/bench_mamba_scoring.py --model mamba-7m-1m --lengths 1048576 4194304 --out "$OUT/scoring"
cat "$OUT/summary.txt"
exit "$failed"
