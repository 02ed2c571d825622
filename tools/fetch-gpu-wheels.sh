#!/usr/bin/env bash
# Download, into .whl/, every wheel the GPU device machine (kind nvidia-h200) lacks to run
#   python3 -m cohort_inrs regenerate --profile paper --device cuda
# there: the papermill stack (papermill, nbformat, nbclient, jupyter_client, ipykernel and their
# dependencies) and this project's runtime dependencies that its image does not have (nilearn, nibabel).
#
# That machine has no network. Its python3 is CPython 3.12 (x86-64) with PyTorch and the packages
# listed in /work/.library/device/KINDS.md ("Python packages already there", copied into PREINSTALLED
# below): numpy, scipy, pandas, matplotlib, seaborn, scikit-image, scikit-learn, safetensors, pillow,
# tqdm, joblib, lxml, requests, pyyaml, click, attrs, psutil, packaging, python-dateutil, pygments,
# aiohttp, typing-extensions ... are there, so only what is missing travels (a wheel of a package
# that is there would shadow the image's version through PYTHONPATH, so it is left out on purpose).
#
# The pins are the versions of this project's own dev venv (.venv, where the smoke regeneration is
# tested), closed over their Requires-Dist for Python 3.12 on Linux, minus PREINSTALLED. After the
# download, a check re-reads every wheel's METADATA and fails if a requirement is neither among the
# downloaded wheels (at a matching version) nor preinstalled there.
#
# cohort_inrs itself needs no wheel: the working tree travels, and PYTHONPATH=/tmp/site:$PWD makes
# it importable with no network (see tools/paper-on-gpu.sh). `pip install -e .` would not work
# there: pip builds the editable wheel in an isolated environment that downloads setuptools>=77.
#
# Usage (from anywhere; needs pip access to PyPI):  bash tools/fetch-gpu-wheels.sh
# Then name ".whl" in the device tool's `carry`. .whl/ is ignored via .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

WHEELS=(
  # the papermill stack (cohort_inrs.pipeline runs every figure notebook with papermill)
  papermill==2.7.0 nbformat==5.11.1 nbclient==0.11.0 jupyter-client==8.10.0 jupyter-core==5.9.1
  ipykernel==7.4.0 ipython==9.18.1 ipython-pygments-lexers==1.1.1 traitlets==5.16.1
  comm==0.2.3 debugpy==1.8.22 matplotlib-inline==0.2.2 nest-asyncio2==1.7.4
  pyzmq==27.3.0 tornado==6.6.1 platformdirs==4.14.8
  fastjsonschema==2.22.3 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
  entrypoints==0.4.2 tenacity==9.2.1
  jedi==0.20.1 parso==0.8.7 pexpect==4.9.0 ptyprocess==0.7.0 prompt-toolkit==3.0.53 wcwidth==0.9.4
  stack-data==0.6.3 executing==2.3.0 asttokens==3.0.2 pure-eval==0.2.4
  # this project's runtime dependencies that the image lacks (the MNI152 templates ship in nilearn)
  nilearn==0.14.1 nibabel==5.4.2
)

# KINDS.md, "Python packages already there" (nvidia-h200, image 'cuda', read 2026-11-17)
PREINSTALLED="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader
lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson
ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda
numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests
rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
wheel wrapt xarray xxhash yarl zipp"

grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
rm -rf .whl; mkdir .whl   # one version of each: two versions of a package stop the whole install there

# pip matches a manylinux_2_N tag only for the N given; the device's glibc is new (Ubuntu 24.04's Python 3.12.3)
PLATFORMS=()
for n in 39 35 34 31 28 27 26 24 17; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)

# Every requirement of every wheel (for Python 3.12 on Linux, no extras) must be downloaded or preinstalled.
PREINSTALLED="$PREINSTALLED" "$PY" - <<'EOF'
import os, re, sys, zipfile, glob
from email.parser import Parser
try: from packaging.requirements import Requirement
except ImportError: from pip._vendor.packaging.requirements import Requirement
norm = lambda n: re.sub(r'[-_.]+', '-', n).lower()
pre = {norm(n) for n in os.environ['PREINSTALLED'].split()}
env = dict(python_version='3.12', python_full_version='3.12.3', sys_platform='linux', platform_system='Linux',
           platform_machine='x86_64', os_name='posix', implementation_name='cpython', platform_python_implementation='CPython', extra='')
have, reqs = {}, {}
for w in sorted(glob.glob('.whl/*.whl')):
    with zipfile.ZipFile(w) as z:
        meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode())
    have[norm(meta['Name'])] = meta['Version']; reqs[norm(meta['Name'])] = meta.get_all('Requires-Dist') or []
bad = []
for name, rs in reqs.items():
    for r in map(Requirement, rs):
        if r.marker and not r.marker.evaluate(env): continue
        n = norm(r.name)
        if n in have:
            if r.specifier and not r.specifier.contains(have[n], prereleases=True): bad.append(f'{name}: {r} but {n} {have[n]} downloaded')
        elif n not in pre: bad.append(f'{name}: {r} is neither downloaded nor preinstalled on the device')
dup = [n for n in have if n in pre]
if dup: bad.append(f'downloaded but already on the device (would shadow its version): {dup}')
if bad: sys.exit('dependency check failed:\n  ' + '\n  '.join(bad))
print(f'dependency check: {len(have)} wheels; every requirement is downloaded or preinstalled')
EOF

ls -1 .whl
echo "total .whl: $(du -cb .whl/*.whl | tail -1 | cut -f1 | numfmt --to=iec-i --suffix=B) in $(ls .whl/*.whl | wc -l) wheels"
tree=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
all=$(( tree + $(du -cb .whl/*.whl | tail -1 | cut -f1) ))
echo "working tree that travels: $(numfmt --to=iec-i --suffix=B "$tree"); with .whl: $(numfmt --to=iec-i --suffix=B "$all") (limit 64 MiB)"
[ "$all" -lt $((60 * 1024 * 1024)) ] || { echo "over 60 MiB: the device tool would refuse the call" >&2; exit 1; }
