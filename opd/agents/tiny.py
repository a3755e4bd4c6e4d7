"""Tiny word-level models that opd builds locally, for the demo and the tests.

No model hub is needed: a word-level tokenizer is fitted to the texts of a tool
suite (every number in a range is one token, and so is each fragment of the
tool-call JSON), a small Llama-architecture model is initialised, and both are
saved with ``save_pretrained`` so that they load back through exactly the
``from_pretrained(path)`` path a hub model takes.

Their chat template is deliberately compact (no system prompt, tools listed by
name), since every prompt token costs training time on a CPU; it renders the
same Hermes ``<tool_call>`` format that :class:`~opd.envs.HermesFormat` parses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from opd.envs import ToolEnv, play_expert

__all__ = ["TINY_CHAT_TEMPLATE", "build_tiny_model", "build_word_tokenizer", "expert_texts"]

# Fragments of the Hermes tool-call JSON, each one token, so a call is ~10 tokens instead of ~30.
CALL_FRAGMENTS = ['{"name": "', '", "arguments": {', '": ', ', "', "}}", '"', "\n"]
SPECIAL_TOKENS = ["<|pad|>", "<|unk|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]
# Numbers, words, or any other single character (spaces included), so that decoding is plain concatenation.
_PIECES = r"-?\d+|[A-Za-z_]+|[^A-Za-z_\d]"

TINY_CHAT_TEMPLATE = (
    "{%- if tools %}{{ '<|im_start|>tools ' }}{% for t in tools %}{{ t.function.name + ' ' }}{% endfor %}{{ '<|im_end|>' }}{% endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' %}"
    "{%- elif message.role == 'tool' %}{{ '<|im_start|>tool ' + message.content + '<|im_end|>' }}"
    "{%- else %}{{ '<|im_start|>' + message.role + ' ' + message.content + '<|im_end|>' }}{% endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant ' }}{% endif %}"
)


def expert_texts(env: ToolEnv, episodes: int) -> list[str]:
    """Every action and observation of the suite expert's episodes on seeds 0..episodes-1: a corpus to fit a tokenizer to.

    Every tool's name and parameter names come first, also of tools the expert
    never calls: the template lists every tool, and a name missing from the
    vocabulary would be ``<|unk|>`` in the prompt and could never be called.
    """
    names = [f"{t.name} {' '.join(t.parameter_names)}" for t in env.suite.tools]
    return [*names, *(text for seed in range(episodes) for e in [play_expert(env, seed)] for text in (*e.actions, *e.observations))]


def build_word_tokenizer(corpus: Iterable[str], directory: Path, *, numbers: range = range(-2000, 2001)) -> PreTrainedTokenizerFast:
    """Fit a word-level tokenizer to ``corpus``, save it to ``directory`` and load it back."""
    texts = [*corpus, "system user assistant tool tools"]  # the role words the template writes
    words = sorted({piece for text in texts for piece in re.findall(_PIECES, text)} | {str(n) for n in numbers})
    backend = Tokenizer(models.WordLevel(unk_token="<|unk|>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_PIECES), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.train_from_iterator([" ".join(words)], trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1))
    backend.add_special_tokens(CALL_FRAGMENTS)  # matched before pre-tokenisation, whole
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        unk_token="<|unk|>",
        eos_token="<|im_end|>",
        bos_token=None,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory)
    return PreTrainedTokenizerFast.from_pretrained(directory)


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast,
    directory: Path,
    *,
    layers: int = 2,
    hidden: int = 128,
    heads: int = 4,
    max_positions: int = 1024,
    seed: int = 0,
) -> PreTrainedModel:
    """A freshly initialised Llama-architecture causal LM over ``tokenizer``'s vocabulary, saved to ``directory``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model
