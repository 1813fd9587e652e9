#!/usr/bin/env bash
# Create (or reuse) a cached virtualenv with a real vLLM release, outside the repository, for the opt-in
# real-parser test tier (tests/vllm/test_real_parser.py, run with VLM_TEST_VLLM=1).
#
#   hack/vllm_venv.sh [VERSION]      # default: the pinned default from operator/vlm_operator/releases/version.py
#
# Prints the venv's python path on the last line of stdout. The venv lives in
# ${VLM_VLLM_VENV_ROOT:-$HOME/.cache/vlm-operator}/vllm-venv-<VERSION>; a marker file is written only after a
# successful install, so an interrupted install is redone on the next run.
#
# vLLM from PyPI pulls torch and the CUDA libraries (about 10 GB installed for 0.11.0, see
# vllm/platforms/__init__.py). If plain PyPI fails, we retry once with the PyTorch CPU wheel index as an extra index.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/.." && pwd)"

version="${1:-}"
if [[ -z "${version}" ]]; then
  version="$(sed -n 's/^DEFAULT_VLLM_VERSION[^=]*= *"\([^"]*\)".*/\1/p' "${repo}/operator/vlm_operator/releases/version.py")"
fi
if [[ ! "${version}" =~ ^[0-9]+(\.[0-9]+)+(\.post[0-9]+)?$ ]]; then
  echo "vllm_venv.sh: bad or missing vLLM version '${version}'" >&2
  exit 2
fi

python="${VLM_VLLM_PYTHON:-python3.11}"
if ! command -v "${python}" >/dev/null 2>&1; then
  python="python3"
fi

root="${VLM_VLLM_VENV_ROOT:-${HOME}/.cache/vlm-operator}"
venv="${root}/vllm-venv-${version}"
marker="${venv}/.vlm-operator-installed"

if [[ -f "${marker}" ]]; then
  echo "vllm_venv.sh: reusing ${venv}" >&2
  echo "${venv}/bin/python"
  exit 0
fi

mkdir -p "${root}"
rm -rf "${venv}"
echo "vllm_venv.sh: creating ${venv} with ${python} ($("${python}" --version 2>&1))" >&2
"${python}" -m venv "${venv}"
"${venv}/bin/python" -m pip install --quiet --upgrade pip >&2

start=$(date +%s)
# PIP_FIND_LINKS may point at a local wheelhouse; it is harmless here, but keep the install reproducible.
if ! PIP_FIND_LINKS= "${venv}/bin/python" -m pip install --progress-bar off "vllm==${version}" >&2; then
  echo "vllm_venv.sh: PyPI-only install failed; retrying with the PyTorch CPU index as an extra index" >&2
  PIP_FIND_LINKS= "${venv}/bin/python" -m pip install --progress-bar off "vllm==${version}" \
    --extra-index-url https://download.pytorch.org/whl/cpu >&2
fi
end=$(date +%s)

installed="$("${venv}/bin/python" -m pip show vllm 2>/dev/null | sed -n 's/^Version: //p')"
if [[ "${installed}" != "${version}" ]]; then
  echo "vllm_venv.sh: expected vllm ${version}, found '${installed}'" >&2
  exit 1
fi
echo "vllm ${version} installed in $((end - start))s; $(du -sh "${venv}" | cut -f1) on disk" >&2
touch "${marker}"
echo "${venv}/bin/python"
