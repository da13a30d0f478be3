#!/usr/bin/env bash
# The learning check's official side, made once: a scratch folder outside this repository holding the
# official training code at the commits benchmarks/RESULTS.md names, a venv that runs it (TensorFlow for
# DRSAN's TF1 graph, OpenCV for BasicSR), and an import-only torchvision stand-in. Prints the command
# that runs the check with it.
#
# Usage: benchmarks/official_trainers/setup_env.sh DIR
# Needs git, python3 with venv, and access to GitHub and PyPI (REPROSR_GIT_BASE: another base for the
# clones, laid out as OWNER/NAME, e.g. a folder of local mirrors).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)
case "$dir/" in "$repo"/*) echo "DIR must lie outside the repository ($repo)" >&2; exit 2 ;; esac
base=${REPROSR_GIT_BASE:-https://github.com}

checkout() { # OWNER/NAME COMMIT FOLDER
    [ -d "$dir/$3/.git" ] || git clone -q "$base/$1" "$dir/$3"
    git -C "$dir/$3" checkout -q "$2"
}
checkout zononhzy/SPAN 4f4eeb5 zononhzy-SPAN
checkout XPixelGroup/BasicSR 8d56e3a BasicSR
checkout hongyuanyu/SPAN c77a591 hongyuanyu-SPAN
checkout laoyangui/HSPAN b9e882a HSPAN
checkout saturnian77/DRSAN 8841874 DRSAN

# SPAN-ESR trains with BasicSR itself: hongyuanyu/SPAN ships only its architecture file. BasicSR's
# basicsr/version.py is written by its setup.py, which is not run here.
cp "$dir/hongyuanyu-SPAN/basicsr/archs/span_arch.py" "$dir/BasicSR/basicsr/archs/span_arch.py"
printf "__version__ = '1.4.2'\n__gitsha__ = '8d56e3a'\nversion_info = (1, 4, 2)\n" \
    >"$dir/BasicSR/basicsr/version.py"

# No torchvision wheel loads beside the CPU torch 2.13 build; the trainers import it and never call it.
stub="$dir/shim/torchvision"
mkdir -p "$stub/transforms" "$stub/models"
cat >"$stub/_stub.py" <<'EOF'
def unavailable(*args, **kwargs):
    raise RuntimeError("torchvision stand-in of the learning check: not available")
EOF
cat >"$stub/__init__.py" <<'EOF'
"""Import-only stand-in for torchvision (the learning check's official trainers never call it)."""
__version__ = "0.0+stub"
from . import models, transforms, utils  # noqa: E402,F401
EOF
printf "from ._stub import unavailable as make_grid  # noqa\nfrom ._stub import unavailable as save_image  # noqa\n" \
    >"$stub/utils.py"
printf "from . import functional, functional_tensor  # noqa\n" >"$stub/transforms/__init__.py"
for f in functional functional_tensor; do
    printf "from .._stub import unavailable as normalize  # noqa\nfrom .._stub import unavailable as rgb_to_grayscale  # noqa\n" \
        >"$stub/transforms/$f.py"
done
printf "from . import vgg  # noqa\nfrom .._stub import unavailable as vgg19  # noqa\nfrom .._stub import unavailable as inception_v3  # noqa\n" \
    >"$stub/models/__init__.py"
printf "model_urls = {}\nfrom .._stub import unavailable as vgg19  # noqa\n" >"$stub/models/vgg.py"

[ -x "$dir/venv/bin/python" ] || python3 -m venv "$dir/venv"
# torch pinned in both calls, so that nothing pulls a newer (CUDA) build; fvcore: zononhzy/SPAN imports it
"$dir/venv/bin/pip" install -q torch==2.13.0
"$dir/venv/bin/pip" install -q torch==2.13.0 tensorflow-cpu opencv-python-headless pyyaml scipy imageio \
    scikit-image tqdm addict future lmdb requests yapf matplotlib pillow fvcore

echo "ready: run the learning check with"
echo "  nox -s learning-check -- --python $dir/venv/bin/python --official-pythonpath $dir/shim" \
    "--span-light-official $dir/zononhzy-SPAN --span-esr-official $dir/BasicSR" \
    "--hspan-official $dir/HSPAN --drsan-official $dir/DRSAN --data-root \$REPROSR_TEST_DATASETS"
