#!/usr/bin/env bash
# The GPU check, from a fresh clone on a machine with a CUDA GPU, in under 10 minutes:
#   1. the trainer's rows/s on the GPU against the CPU (benchmarks/trainer.py);
#   2. sweep trials per hour with 4 trials sharing one GPU (resources.gpu: 0.25) against one
#      trial at a time (benchmarks/sweep.py --gpu-only);
#   3. a token task's epoch over the text encoder (frozen, top-1, top-2) against the path
#      before issue 24 and a bare Hugging Face loop (benchmarks/encoder.py; aim on the GPU:
#      trainer/bare >= 0.95).
# Without a GPU it runs the CPU part and says what it skipped. Run: bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make install >/dev/null
PY=.venv/bin/python
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1

if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    cuda=1
    "$PY" -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))'
else
    cuda=0
    "$PY" -c 'import torch; print("torch", torch.__version__, "without CUDA")'
fi

rate() { sed -n 's/^  trainer *\([0-9,]*\) rows\/s$/\1/p' | tr -d ,; }
echo "== trainer, CPU (2 threads)"
cpu_out=$(timeout 120 "$PY" benchmarks/trainer.py --device cpu --rows 20000 --repeats 2)
echo "$cpu_out"
if [ "$cuda" = 1 ]; then
    echo "== trainer, GPU"
    gpu_out=$(timeout 120 "$PY" benchmarks/trainer.py --device cuda --rows 100000 --repeats 3)
    echo "$gpu_out"
    cpu_rate=$(echo "$cpu_out" | rate)
    gpu_rate=$(echo "$gpu_out" | rate)
    "$PY" -c "print(f'trainer rows/s, GPU / CPU: {$gpu_rate / $cpu_rate:.1f}x')"
    echo "== sweep: 4 trials sharing one GPU vs one at a time"
    timeout 180 "$PY" benchmarks/sweep.py --gpu-only --trials 8 --epochs 4 --rows 15000
fi
echo "== token task over the text encoder, CPU (2 threads, 300 statements)"
timeout 300 "$PY" benchmarks/encoder.py --device cpu --n 300 --repeats 2
if [ "$cuda" = 1 ]; then
    echo "== token task over the text encoder, GPU (1,122 statements)"
    timeout 300 "$PY" benchmarks/encoder.py --device cuda --repeats 3
else
    echo "no CUDA device: the GPU trainer run, the fractional-GPU sweep and the GPU encoder run are skipped"
fi
