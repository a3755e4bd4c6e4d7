"""Build small model directories that carry a real tokenizer and a real chat template (test fixtures).

Input: a directory holding what ``scripts/ensure-real-tokenizers.sh`` extracted from
the llama-cpp-python 0.3.36 source distribution: ``ggml-vocab-qwen2.gguf`` (Qwen2's
151,936-token byte-level BPE), ``ggml-vocab-llama-bpe.gguf`` (Llama 3's) and
``templates/*.jinja`` (the models' own chat templates). Output, per model, a
directory that loads with ``from_pretrained(path)`` as a hub model would:

- ``qwen2.5``: Qwen2.5-Instruct's tokenizer and tool-calling template, a Qwen2 model;
- ``llama3.1``: Llama 3.1-Instruct's tokenizer and JSON tool-calling template (``ipython`` role), a Llama model;
- ``qwen3``: Qwen3's tokenizer and reasoning template (it drops earlier turns' ``<think>``), a Qwen3 model.

The GGUF vocabularies predate the named special tokens of these releases (Qwen2's
has ``[PAD151657]`` where Qwen2.5 has ``<tool_call>``; Llama 3's has
``<|reserved_special_token_4|>`` where Llama 3.1 has ``<|eom_id|>``); those entries
are renamed at the same ids, so token ids match the released tokenizers for the
tokens the templates use. Models are randomly initialised (hidden 128, 2 layers,
head dimension 64, tied embeddings): what is real here is the tokenization and the
template, not the weights. Loading a tokenizer from GGUF takes ~25 s; the saved
``tokenizer.json`` loads in a second or two.

    python scripts/build_real_models.py SOURCES_DIR OUTPUT_DIR
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

HIDDEN, LAYERS, HEAD_DIM = 128, 2, 64

# Qwen2.5 / Qwen3 added tokens at their released ids: (content, special).
QWEN_TOKENS = {
    151646: ("<|object_ref_start|>", True),
    151647: ("<|object_ref_end|>", True),
    151648: ("<|box_start|>", True),
    151649: ("<|box_end|>", True),
    151650: ("<|quad_start|>", True),
    151651: ("<|quad_end|>", True),
    151652: ("<|vision_start|>", True),
    151653: ("<|vision_end|>", True),
    151654: ("<|vision_pad|>", True),
    151655: ("<|image_pad|>", True),
    151656: ("<|video_pad|>", True),
    151657: ("<tool_call>", False),
    151658: ("</tool_call>", False),
    151659: ("<|fim_prefix|>", False),
    151660: ("<|fim_middle|>", False),
    151661: ("<|fim_suffix|>", False),
    151662: ("<|fim_pad|>", False),
    151663: ("<|repo_name|>", False),
    151664: ("<|file_sep|>", False),
}
QWEN3_TOKENS = {
    151665: ("<tool_response>", False),
    151666: ("</tool_response>", False),
    151667: ("<think>", False),
    151668: ("</think>", False),
}
LLAMA31_TOKENS = {128004: ("<|finetune_right_pad_id|>", True), 128008: ("<|eom_id|>", True), 128010: ("<|python_tag|>", True)}


@dataclass(frozen=True)
class Recipe:
    gguf: str
    template: str
    renamed: dict[int, tuple[str, bool]]
    eos: str
    pad: str
    architecture: str  # qwen2, qwen3 or llama
    drop_above: int | None = None  # added tokens at or above this id are not in the release (dropped)


RECIPES = {
    "qwen2.5": Recipe("ggml-vocab-qwen2.gguf", "Qwen-Qwen2.5-7B-Instruct.jinja", QWEN_TOKENS, "<|im_end|>", "<|endoftext|>", "qwen2"),
    "llama3.1": Recipe(
        "ggml-vocab-llama-bpe.gguf",
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        LLAMA31_TOKENS,
        "<|eot_id|>",
        "<|finetune_right_pad_id|>",
        "llama",
        drop_above=128256,
    ),
    "qwen3": Recipe(
        "ggml-vocab-qwen2.gguf", "Qwen-Qwen3-0.6B.jinja", {**QWEN_TOKENS, **QWEN3_TOKENS}, "<|im_end|>", "<|endoftext|>", "qwen3"
    ),
}


def rename_tokens(tokenizer_json: Path, renamed: dict[int, tuple[str, bool]], drop_above: int | None) -> None:
    """Give added tokens their released names (and special flags) at the same ids, in a saved ``tokenizer.json``."""
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    kept = []
    for token in data["added_tokens"]:
        if drop_above is not None and token["id"] >= drop_above:
            continue
        if token["id"] in renamed:
            old = token["content"]
            token["content"], token["special"] = renamed[token["id"]]
            vocab = data["model"].get("vocab", {})
            if isinstance(vocab, dict) and vocab.get(old) == token["id"]:
                vocab[token["content"]] = vocab.pop(old)
        kept.append(token)
    data["added_tokens"] = kept
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def build_tokenizer(sources: Path, recipe: Recipe, directory: Path):
    tokenizer = AutoTokenizer.from_pretrained(str(sources), gguf_file=recipe.gguf)
    tokenizer.save_pretrained(directory)
    rename_tokens(directory / "tokenizer.json", recipe.renamed, recipe.drop_above)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = (sources / "templates" / recipe.template).read_text(encoding="utf-8")
    tokenizer.eos_token, tokenizer.pad_token = recipe.eos, recipe.pad
    tokenizer.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def build_model(tokenizer, recipe: Recipe, seed: int = 0) -> PreTrainedModel:
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=4 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HIDDEN // HEAD_DIM,
        num_key_value_heads=HIDDEN // HEAD_DIM,
        head_dim=HEAD_DIM,
        max_position_embeddings=4_096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    if recipe.architecture == "llama":
        return LlamaForCausalLM(LlamaConfig(**common))
    if recipe.architecture == "qwen3":
        return Qwen3ForCausalLM(Qwen3Config(**common))
    return Qwen2ForCausalLM(Qwen2Config(**common))


def main(sources: Path, output: Path) -> None:
    for name, recipe in RECIPES.items():
        directory = output / name
        if (directory / ".built").exists():
            print(f"{name}: already built at {directory}", flush=True)
            continue
        print(f"{name}: tokenizer from {recipe.gguf} (about 25 s), template {recipe.template}", flush=True)
        tokenizer = build_tokenizer(sources, recipe, directory)
        build_model(tokenizer, recipe).save_pretrained(directory)
        (directory / ".built").touch()  # last: a directory without it was interrupted and is rebuilt
        print(f"{name}: {len(tokenizer):,} tokens, model saved to {directory}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} SOURCES_DIR OUTPUT_DIR")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
