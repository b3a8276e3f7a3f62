#!/usr/bin/env bash
# GPU checks, sized for one device run (< 8 minutes on an H100): bench/scale.py at 372k cells on CUDA, the
# gpu-marked tests, then bench/scale.py at 1M cells (no scanpy comparison at these sizes: leiden alone would
# exceed the budget). Each part has its own time limit; logs go to $OUT (the device tool's output folder) or
# ./gpu-check-out. Exits non-zero when torch sees no CUDA device (a CPU-only wheel), when a part fails or times
# out, or when the gpu tests did not all pass (skipped ones count as failed: here they must run).
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
if ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "FAIL: torch sees no CUDA device (a CPU-only wheel, or no driver)" | tee -a "$out/gpu.txt"
  exit 1
fi
status=0
timeout 100 python3 bench/scale.py --device cuda --sizes 372000 --skip-scanpy 2>&1 | tee "$out/scale_372k.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "FAIL: scale.py at 372k cells"; status=1; }
# -rs lists skips; --strict-markers as in pyproject; a skipped or failed gpu test fails the check
timeout 120 python3 -m pytest -q -m gpu -rs -p no:cacheprovider -n 0 tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "FAIL: gpu tests"; status=1; }
if grep -qE "[0-9]+ skipped" "$out/gpu_tests.log" || ! grep -qE "[0-9]+ passed" "$out/gpu_tests.log"; then
  echo "FAIL: gpu tests skipped or none passed"; status=1
fi
timeout 130 python3 bench/scale.py --device cuda --sizes 1000000 --skip-scanpy 2>&1 | tee "$out/scale_1m.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "FAIL: scale.py at 1M cells"; status=1; }
exit $status
