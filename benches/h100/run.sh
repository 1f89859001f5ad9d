#!/usr/bin/env bash
# nava vs PyTorch on one NVIDIA GPU (sized for an H100), every command under its own timeout and the whole under
# LIMIT seconds (default 570, so under 10 minutes with start-up):
#   GEMM     `nava bench gemm` f32/f16/bf16/q8/q4/fp8 at 4096³ and the FFN-up shape of NAVA.md §10.1
#            vs torch.matmul (f32 strict, f32 with TF32, bf16)
#   attention `nava bench attention` vs scaled_dot_product_attention (bf16, f32) at the joint self-attention
#            shape (24 heads, L×L, head dim 128) and the text cross-attention shape (24 heads, L×512)
#   block    `nava bench block --kind double --tokens 4096` (f32 and f16 weights) vs benches/torch/block.py
# Where the adapter offers cooperative matrices, GEMMs with weights narrower than f32 run on the tensor-core kernel
# (gemm_coop.wgsl) and attention with half precision allowed on attention_coop.wgsl: both are checked against
# f64 CPU references first. Before/after rows in the same run: the f16 GEMMs and block with NAVA_GEMM_COOP=0
# (no tensor cores), f32 GEMMs and block with NAVA_GEMM_TILED=0 (the CPU drivers' kernel),
# attention without --half, the f16 block with NAVA_NORM_SUBGROUP=0.
# and prints a markdown table with nava ÷ PyTorch ratios. Logs and results.md go to the folder given (default: a
# new temporary folder).
#
#   benches/h100/run.sh [OUT_DIR]
#
# Environment: NAVA (the binary; default target/release/nava, built with cargo when missing), PYTHON (default
# python3), NAVA_ADAPTER (default NVIDIA: never measure a software adapter by mistake), LIMIT, SECS (seconds each
# bench measures, default 2), GEMM_SIZE (default 4096), FFN_TOKENS (M of the FFN GEMM, default 32712), ATTN_L
# (attention length, default 32712), BLOCK_TOKENS (default 4096), TORCH_DEVICE (default cuda; cpu for a dry run
# of the script with tiny sizes on a machine without a GPU), ONLY (a regular expression of the bench keys to run,
# e.g. 'gemmsq|block'). Without a CUDA-enabled torch the PyTorch half is skipped and said so.

set -u
cd "$(dirname "$0")/../.." || exit 1
LIMIT=${LIMIT:-570}
SECS=${SECS:-2}
ATTN_L=${ATTN_L:-32712}
GEMM_SIZE=${GEMM_SIZE:-4096}
FFN_TOKENS=${FFN_TOKENS:-32712}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
BLOCK_TOKENS=${BLOCK_TOKENS:-4096}
PYTHON=${PYTHON:-python3}
NAVA=${NAVA:-target/release/nava}
export NAVA_ADAPTER=${NAVA_ADAPTER:-NVIDIA}
[ -n "${XDG_RUNTIME_DIR:-}" ] || export XDG_RUNTIME_DIR=$(mktemp -d)
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
START=$SECONDS

left() { echo $((LIMIT - (SECONDS - START))); }

# run KEY TIMEOUT CMD…: runs CMD under min(TIMEOUT, time left); R[KEY] = the number on its last line, or why not.
declare -A R
run() {
    local key=$1 t=$2 rest
    shift 2
    # ONLY: a regular expression of the keys to run (the rest are skipped without a word).
    if [ -n "${ONLY:-}" ] && ! [[ $key =~ $ONLY ]]; then return; fi
    rest=$(left)
    if [ "$rest" -lt 15 ]; then R[$key]="skipped (time)"; echo "  $key: skipped, out of time"; return; fi
    [ "$t" -gt "$rest" ] && t=$rest
    local t0=$SECONDS
    timeout -k 5 "$t" "$@" >"$OUT/$key.log" 2>&1
    local rc=$?
    local last
    last=$(tail -n 1 "$OUT/$key.log" | awk '{print $NF}')
    if [ $rc -eq 0 ] && [[ $last =~ ^[0-9.]+$ ]]; then
        R[$key]=$last
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        R[$key]="timeout (${t} s)"
    else
        R[$key]="failed (rc $rc)"
    fi
    echo "  $key: ${R[$key]}  [$((SECONDS - t0)) s]"
}

echo "# nava vs PyTorch — $(date -u '+%Y-%m-%d %H:%M UTC')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

if [ ! -x "$NAVA" ]; then
    if command -v cargo >/dev/null; then
        echo "building nava (cargo build --release -p nava-cli) …"
        bt=$(($(left) - 200))
        [ "$bt" -gt 30 ] || bt=30
        timeout "$bt" cargo build --release -p nava-cli >"$OUT/build.log" 2>&1 \
            || { echo "build failed or too slow: see $OUT/build.log"; tail -5 "$OUT/build.log"; exit 1; }
        echo "built in $((SECONDS - START)) s"
    else
        echo "no $NAVA and no cargo: set NAVA to a release-built nava"; exit 1
    fi
fi

# The adapter first: a wrong or missing driver ends the run here, in seconds, not after every bench has failed.
if ! timeout 60 "$NAVA" info >"$OUT/info.log" 2>&1 || ! grep -q "^using: .*$NAVA_ADAPTER" "$OUT/info.log"; then
    echo "no $NAVA_ADAPTER adapter: see $OUT/info.log"; cat "$OUT/info.log"; exit 1
fi
sed -n '/^using:/,/^kernel variants:/p' "$OUT/info.log"

TORCH=1
CHECK='import sys, torch; sys.exit(0 if sys.argv[1] == "cpu" or torch.cuda.is_available() else 1)'
if ! "$PYTHON" -c "$CHECK" "$TORCH_DEVICE" >"$OUT/torch-check.log" 2>&1; then
    TORCH=0
    echo "PyTorch with CUDA not found ($PYTHON): skipping the PyTorch half"
fi
TB=benches/torch

# trun …: as run, for the PyTorch half (nothing without torch). Each nava bench is followed by its peers.
trun() { [ $TORCH = 1 ] && run "$@"; }
P=("$PYTHON" "$TB/gemm_attn.py")
TD="--device $TORCH_DEVICE"

echo "GEMM ${GEMM_SIZE}³:"
G="--m $GEMM_SIZE --n $GEMM_SIZE --k $GEMM_SIZE --seconds $SECS"
for d in f16 q8; do
    # Correctness of the kernel each format runs on (the tensor-core one where offered), 16 rows vs f64.
    run "check-gemm-$d" 60 "$NAVA" bench gemm --m 1000 --n 1100 --k 3072 --seconds 0.1 --check-rows 16 --dtype "$d"
    grep -h '^check:\|^gemm' "$OUT/check-gemm-$d.log" 2>/dev/null
done
run check-gemm-f32 60 "$NAVA" bench gemm --m 1000 --n 1100 --k 3072 --seconds 0.1 --check-rows 16 --dtype f32
grep -h '^check:\|^gemm' "$OUT/check-gemm-f32.log" 2>/dev/null
run check-attn-half 60 "$NAVA" bench attention --heads 24 --head-dim 128 --lq 1000 --lk 1100 --seconds 0.1 \
    --check-rows 16 --half
grep -h '^check:\|^attention' "$OUT/check-attn-half.log" 2>/dev/null
for d in f32 f16 bf16 q8 q4 fp8; do run "nava-gemmsq-$d" 45 "$NAVA" bench gemm $G --dtype "$d"; done
NAVA_GEMM_COOP=0 run nava-gemmsq-f16-plain 45 "$NAVA" bench gemm $G --dtype f16
NAVA_GEMM_TILED=0 run nava-gemmsq-f32-plain 45 "$NAVA" bench gemm $G --dtype f32
trun torch-gemmsq-f32 45 "${P[@]}" gemm $G $TD --dtype f32
trun torch-gemmsq-tf32 45 "${P[@]}" gemm $G $TD --dtype f32 --tf32
trun torch-gemmsq-bf16 45 "${P[@]}" gemm $G $TD --dtype bf16

echo "GEMM FFN up:"
F="--m $FFN_TOKENS --n 14336 --k 3072 --seconds $SECS"
for d in f32 f16; do run "nava-gemmffn-$d" 60 "$NAVA" bench gemm $F --dtype "$d"; done
NAVA_GEMM_COOP=0 run nava-gemmffn-f16-plain 60 "$NAVA" bench gemm $F --dtype f16
NAVA_GEMM_TILED=0 run nava-gemmffn-f32-plain 60 "$NAVA" bench gemm $F --dtype f32
trun torch-gemmffn-f32 45 "${P[@]}" gemm $F $TD --dtype f32
trun torch-gemmffn-bf16 45 "${P[@]}" gemm $F $TD --dtype bf16

echo "attention:"
A="--heads 24 --head-dim 128 --seconds $SECS"
J="--lq $ATTN_L --lk $ATTN_L"
C="--lq $ATTN_L --lk 512"
run nava-attn-joint 90 "$NAVA" bench attention $A $J
run nava-attn-joint-half 90 "$NAVA" bench attention $A $J --half
for d in bf16 f32; do trun "torch-attn-joint-$d" 60 "${P[@]}" attention $A $J $TD --dtype "$d"; done
run nava-attn-cross 45 "$NAVA" bench attention $A $C
run nava-attn-cross-half 45 "$NAVA" bench attention $A $C --half
for d in bf16 f32; do trun "torch-attn-cross-$d" 45 "${P[@]}" attention $A $C $TD --dtype "$d"; done

echo "double block, $BLOCK_TOKENS tokens:"
B="--kind double --tokens $BLOCK_TOKENS --seconds $SECS"
for d in f32 f16; do run "nava-block-$d" 100 "$NAVA" bench block $B --dtype "$d"; done
NAVA_GEMM_COOP=0 NAVA_ATTENTION_COOP=0 run nava-block-f16-plain 100 "$NAVA" bench block $B --dtype f16
NAVA_NORM_SUBGROUP=0 run nava-block-f16-nosg 100 "$NAVA" bench block $B --dtype f16
NAVA_GEMM_TILED=0 run nava-block-f32-plain 100 "$NAVA" bench block $B --dtype f32
for d in bf16 f32; do trun "torch-block-$d" 90 "$PYTHON" "$TB/block.py" $B $TD --dtype "$d"; done

# row LABEL NAVA_KEY TORCH_KEY TORCH_LABEL UNIT
row() {
    local a=${R[$2]:-—} b=${R[$3]:-—} ratio="—"
    [ $TORCH = 1 ] || b="(no torch)"
    if [[ $a =~ ^[0-9.]+$ ]] && [[ $b =~ ^[0-9.]+$ ]]; then
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", a/b}')
    fi
    echo "| $1 | $a | $4 | $b | $ratio | $5 |"
}
adapter=$(grep -h -m1 '^adapter:' "$OUT"/nava-*.log 2>/dev/null | head -1 | cut -d: -f2-)
tdev=$(grep -h -m1 '^device:' "$OUT"/torch-*.log 2>/dev/null | head -1 | cut -d: -f2-)
{
    echo
    echo "nava adapter:${adapter:- ?}"
    echo "PyTorch:${tdev:- (not run)}"
    echo
    echo "| benchmark | nava | PyTorch peer | PyTorch | nava ÷ PyTorch | unit |"
    echo "|---|---|---|---|---|---|"
    row "GEMM ${GEMM_SIZE}³, f32 weights" nava-gemmsq-f32 torch-gemmsq-f32 "matmul f32 (no TF32)" GFLOP/s
    row "GEMM ${GEMM_SIZE}³, f32 weights" nava-gemmsq-f32 torch-gemmsq-tf32 "matmul f32, TF32" GFLOP/s
    row "GEMM ${GEMM_SIZE}³, f32 weights, plain kernel" nava-gemmsq-f32-plain torch-gemmsq-f32 "matmul f32 (no TF32)" GFLOP/s
    row "GEMM ${GEMM_SIZE}³, f16 weights" nava-gemmsq-f16 torch-gemmsq-bf16 "matmul bf16" GFLOP/s
    row "GEMM ${GEMM_SIZE}³, f16 weights, plain kernel" nava-gemmsq-f16-plain torch-gemmsq-bf16 "matmul bf16" GFLOP/s
    row "GEMM ${GEMM_SIZE}³, bf16 weights" nava-gemmsq-bf16 torch-gemmsq-bf16 "matmul bf16" GFLOP/s
    row "GEMM ${GEMM_SIZE}³, q8 weights" nava-gemmsq-q8 torch-gemmsq-bf16 "matmul bf16" GFLOP/s
    row "GEMM ${GEMM_SIZE}³, q4 weights" nava-gemmsq-q4 torch-gemmsq-bf16 "matmul bf16" GFLOP/s
    row "GEMM ${GEMM_SIZE}³, fp8 weights" nava-gemmsq-fp8 torch-gemmsq-bf16 "matmul bf16" GFLOP/s
    row "GEMM FFN up ${FFN_TOKENS}×14336×3072, f32" nava-gemmffn-f32 torch-gemmffn-f32 "matmul f32 (no TF32)" GFLOP/s
    row "GEMM FFN up, f32, plain kernel" nava-gemmffn-f32-plain torch-gemmffn-f32 "matmul f32 (no TF32)" GFLOP/s
    row "GEMM FFN up ${FFN_TOKENS}×14336×3072, f16 weights" nava-gemmffn-f16 torch-gemmffn-bf16 "matmul bf16" GFLOP/s
    row "GEMM FFN up, f16 weights, plain kernel" nava-gemmffn-f16-plain torch-gemmffn-bf16 "matmul bf16" GFLOP/s
    row "joint attention 24 × ${ATTN_L}² × 128" nava-attn-joint torch-attn-joint-bf16 "SDPA bf16" GFLOP/s
    row "joint attention 24 × ${ATTN_L}² × 128" nava-attn-joint torch-attn-joint-f32 "SDPA f32" GFLOP/s
    row "joint attention, half precision (tensor cores)" nava-attn-joint-half torch-attn-joint-bf16 "SDPA bf16" GFLOP/s
    row "text cross-attention 24 × ${ATTN_L}×512 × 128" nava-attn-cross torch-attn-cross-bf16 "SDPA bf16" GFLOP/s
    row "text cross-attention 24 × ${ATTN_L}×512 × 128" nava-attn-cross torch-attn-cross-f32 "SDPA f32" GFLOP/s
    row "text cross-attention, half precision (tensor cores)" nava-attn-cross-half torch-attn-cross-bf16 "SDPA bf16" GFLOP/s
    row "double block, ${BLOCK_TOKENS} tokens, f32 weights" nava-block-f32 torch-block-f32 "block.py f32" tokens/s
    row "double block, ${BLOCK_TOKENS} tokens, f16 weights" nava-block-f16 torch-block-bf16 "block.py bf16" tokens/s
    row "double block, f16 weights, no tensor cores" nava-block-f16-plain torch-block-bf16 "block.py bf16" tokens/s
    row "double block, f16 weights, norms without subgroups" nava-block-f16-nosg torch-block-bf16 "block.py bf16" tokens/s
    row "double block, f32 weights, plain GEMM" nava-block-f32-plain torch-block-f32 "block.py f32" tokens/s
    echo
    echo "attention check (half): $(grep -h '^check:' "$OUT/check-attn-half.log" 2>/dev/null | cut -d= -f2)" \
        "on $(grep -h '^attention' "$OUT/check-attn-half.log" 2>/dev/null | sed 's/.*\[\(.*\)\].*/\1/')"
    for d in f16 q8 f32; do
        echo "kernel check ($d weights): $(grep -h '^check:' "$OUT/check-gemm-$d.log" 2>/dev/null | cut -d= -f2)" \
            "on $(grep -h '^gemm' "$OUT/check-gemm-$d.log" 2>/dev/null | sed 's/.*\[\(.*\)\].*/\1/')"
    done
    echo "nava activations are f32 in every row (the dtype is the weights' storage); $SECS s measured per bench;"
    echo "total $((SECONDS - START)) s. Logs: one per bench next to this file."
} | tee "$OUT/results.md"
