#!/usr/bin/env bash
# Create (or reuse) a cached virtualenv with the real Hugging Face image processors, outside the repository, for the
# opt-in processor tier (tests/processors/, run with VLM_TEST_PROCESSORS=1).
#
#   hack/processors_venv.sh [TRANSFORMERS_VERSION]   # default: the pin below
#
# Prints the venv's python path on the last line of stdout. The venv lives in
# ${VLM_PROCESSORS_VENV_ROOT:-$HOME/.cache/vlm-operator}/processors-venv-<VERSION>; a marker file is written only after
# a successful install, so an interrupted install is redone on the next run.
#
# Only transformers, pillow and numpy: the tier uses the PIL/numpy ("slow") image processors, which need neither torch
# nor torchvision (nor model weights). The one family whose transformers image processor is torchvision-only (Llama 4)
# is checked against the pure-Python helpers of that module instead (see tests/processors/README.md).
# The transformers pin is the release the default vLLM (0.32.0) resolves to (~/.cache/vlm-operator/vllm-venv-0.32.0).
set -euo pipefail

version="${1:-5.19.0}"
if [[ ! "${version}" =~ ^[0-9]+(\.[0-9]+)+$ ]]; then
  echo "processors_venv.sh: bad transformers version '${version}'" >&2
  exit 2
fi

python="${VLM_PROCESSORS_PYTHON:-python3.11}"
if ! command -v "${python}" >/dev/null 2>&1; then
  python="python3"
fi

root="${VLM_PROCESSORS_VENV_ROOT:-${HOME}/.cache/vlm-operator}"
venv="${root}/processors-venv-${version}"
marker="${venv}/.vlm-operator-installed"

if [[ -f "${marker}" ]]; then
  echo "processors_venv.sh: reusing ${venv}" >&2
  echo "${venv}/bin/python"
  exit 0
fi

mkdir -p "${root}"
rm -rf "${venv}"
echo "processors_venv.sh: creating ${venv} with ${python} ($("${python}" --version 2>&1))" >&2
start=$(date +%s)
"${python}" -m venv "${venv}"
# PIP_FIND_LINKS may point at a local wheelhouse; ignore it so that the install is what PyPI serves.
PIP_FIND_LINKS= "${venv}/bin/python" -m pip install --quiet --progress-bar off \
  "transformers==${version}" "pillow==13.0.0" "numpy==2.3.5" >&2
end=$(date +%s)

installed="$("${venv}/bin/python" -m pip show transformers 2>/dev/null | sed -n 's/^Version: //p')"
if [[ "${installed}" != "${version}" ]]; then
  echo "processors_venv.sh: expected transformers ${version}, found '${installed}'" >&2
  exit 1
fi
if "${venv}/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "processors_venv.sh: torch got installed; the tier is meant to run without it" >&2
  exit 1
fi
echo "transformers ${version} installed in $((end - start))s; $(du -sh "${venv}" | cut -f1) on disk" >&2
touch "${marker}"
echo "${venv}/bin/python"
