#!/usr/bin/env bash
# One-shot proof of the GPU path, under 8 minutes on one H100: a short pretrain of the `gpu` preset (bf16 autocast +
# torch.compile, as pretrain.precision/compile=auto pick on CUDA), its tokens/s and MFU against the card's bf16
# peak, an eval and a post-train on CUDA, and CPU-vs-GPU persona bits on the same checkpoint (tolerance and its
# derivation: BITS_TOLERANCE in benchmarks/gpu_smoke.py). Downloads nothing (offline flags below).
#
#   benchmarks/gpu_smoke.sh [OUT_DIR]      OUT_DIR defaults to a fresh temporary directory
#
# Exits non-zero with one line when no GPU is visible, when a step fails, when the bits differ beyond the tolerance,
# or when the whole run took longer than its budget (GPU_SMOKE_BUDGET_S, default 480 s).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)

PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
HELPER=benchmarks/gpu_smoke.py
trap 'echo "gpu_smoke: FAIL: step failed: $BASH_COMMAND" >&2' ERR

"$PY" "$HELPER" require-gpu || exit 2  # its one line says why
OUT=${1:-$(mktemp -d -t gpu-smoke-XXXXXX)}
echo "gpu_smoke: writing into $OUT"

# 1. Pretrain: the gpu preset's model and world on a 3M-unit corpus, 300 steps of 64 x 512 tokens (9.8M tokens).
"$PY" -m hyperstition pretrain gpu corpus.total_tokens=3000000 pretrain.steps=300 pretrain.warmup_steps=30 \
  pretrain.log_every=25 pretrain.checkpoint_every=100 pretrain.device=cuda --no-progress --out "$OUT/pretrain"
"$PY" "$HELPER" throughput "$OUT/pretrain"

# 2. Evaluate the pretrained model on CUDA with the default (quick) suite.
"$PY" -m hyperstition eval --model "$OUT/pretrain/final" --suite quick --device cuda --quiet --out "$OUT/eval-cuda"

# 3. Post-train it on CUDA (DPO, the smoke post-training preset: 12 steps with curve evaluations).
"$PY" -m hyperstition posttrain smoke device=cuda --model "$OUT/pretrain/final" --strategy dpo --quiet \
  --out "$OUT/posttrain"

# 4. The same checkpoint's persona bits on CPU and on CUDA (bits only: scoring fixed replies, no sampling).
BITS_ONLY=(--suite smoke sections.rates=false sections.knowledge=false sections.capability=false sections.kl=false)
"$PY" -m hyperstition eval --model "$OUT/pretrain/final" "${BITS_ONLY[@]}" --device cpu --quiet --out "$OUT/bits-cpu"
"$PY" -m hyperstition eval --model "$OUT/pretrain/final" "${BITS_ONLY[@]}" --device cuda --quiet --out "$OUT/bits-cuda"
"$PY" "$HELPER" compare "$OUT/bits-cpu" "$OUT/bits-cuda"

"$PY" "$HELPER" budget "$START" "${GPU_SMOKE_BUDGET_S:-480}"
echo "gpu_smoke: ok"
