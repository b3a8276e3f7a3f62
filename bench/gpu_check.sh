#!/usr/bin/env bash
# GPU checks, sized for one device run (< 8 minutes on an H100): bench/scale.py at 372k cells on CUDA, the
# gpu-marked tests, then bench/scale.py at 1M cells (no scanpy comparison at these sizes: leiden alone would
# exceed the budget). Each part has its own time limit; logs go to $OUT (the device tool's output folder) or
# ./gpu-check-out.
#
# On the device machine (see ../shared/gpu/README.md): carry the wheels folder, then
#   python3 -m pip install -q --no-index --no-deps --target "$HOME/site" .whl/*.whl
#   export PYTHONPATH="$HOME/site:$PWD"; bash bench/gpu_check.sh
set -uo pipefail
out=${OUT:-gpu-check-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
timeout 100 python3 bench/scale.py --device cuda --sizes 372000 --skip-scanpy 2>&1 | tee "$out/scale_372k.log"
timeout 120 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.log"
timeout 130 python3 bench/scale.py --device cuda --sizes 1000000 --skip-scanpy 2>&1 | tee "$out/scale_1m.log"
