#!/usr/bin/env bash
# Prepare, once, small model directories with real tokenizers and chat templates (Qwen2.5, Llama 3.1, Qwen3)
# for the tests marked `real_tokenizer`, and print the directory that holds them.
#
# The tokenizers and templates come from the PyPI source distribution of llama-cpp-python 0.3.36 (about 77 MB),
# which vendors llama.cpp's vocabulary-only GGUF files and the models' chat templates; only those few files are
# extracted. Everything is cached under $OPD_REAL_MODELS_DIR (default ~/.cache/opd/real-models-v1), outside the
# repository, so a second run does nothing. Needs the `gguf` package (in opd's `test` extra).
#
#   scripts/ensure-real-tokenizers.sh .venv/bin/python
set -euo pipefail
PYTHON="${1:-python3}"
VERSION=0.3.36
CACHE="${OPD_REAL_MODELS_DIR:-$HOME/.cache/opd/real-models-v1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

if [ -f "$CACHE/models/.complete" ]; then
    echo "$CACHE/models"
    exit 0
fi
mkdir -p "$CACHE/download" "$CACHE/sources"
SDIST="$CACHE/download/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    echo "Downloading the llama-cpp-python $VERSION source distribution (about 77 MB) for its tokenizers and templates..." >&2
    "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE/download" >&2
fi
PREFIX="llama_cpp_python-$VERSION/vendor/llama.cpp/models"
tar -xzf "$SDIST" -C "$CACHE/sources" --strip-components=4 \
    "$PREFIX/ggml-vocab-qwen2.gguf" "$PREFIX/ggml-vocab-llama-bpe.gguf" \
    "$PREFIX/templates/Qwen-Qwen2.5-7B-Instruct.jinja" "$PREFIX/templates/Qwen-Qwen3-0.6B.jinja" \
    "$PREFIX/templates/meta-llama-Llama-3.1-8B-Instruct.jinja"
"$PYTHON" "$ROOT/scripts/build_real_models.py" "$CACHE/sources" "$CACHE/models" >&2
touch "$CACHE/models/.complete"
echo "$CACHE/models"
