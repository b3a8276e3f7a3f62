#!/usr/bin/env bash
# bench/image_fashion.py on the GPU machine, sized for one device session (15 min in all): on an H100 a
# SimCLR epoch takes 2.5 s and a FALCON epoch 4.3 s, so 40 + 90 epochs take about 8.5 minutes.
# Carry .whl (../shared/gpu/README.md, plus a safetensors wheel) and .bench-data/fashion-mnist (a copy of
# /usr/share/datasets/fashion-mnist from the Debian package dataset-fashion-mnist).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$HOME/site" .whl/*.whl && export PYTHONPATH="$HOME/site:$PWD" || exit
export PYTHONUNBUFFERED=1
out=${OUT:-gpu-image-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# --budget-s shortens the epochs only on a slower card; the test scores printed every 10 FALCON epochs survive a
# timeout.
timeout 580 python bench/image_fashion.py --root .bench-data/fashion-mnist --device cuda --ssl-epochs 40 --epochs 90 \
  --budget-s 540 --variants delayed --out "$out/image_fashion_gpu.md" 2>&1 | grep -v "^Running HiGHS\|^Includes third" | tee "$out/image_fashion.log"
