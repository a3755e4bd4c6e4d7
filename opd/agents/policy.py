"""``CausalLMPolicy``: a transformers causal LM that generates actions for many envs at once.

Loaded by hub name or local directory through the same ``from_pretrained``
path. Generation is batched over contexts of different lengths with left
padding, uses the KV cache within a turn, samples with temperature and top-p,
and stops at the end of a tool call or of the turn. It returns, per context,
the generated token ids and their log-probabilities under the model (at
temperature 1, i.e. the distribution being distilled, not the sampling one).

The decoding loop is opd's own rather than ``model.generate`` because it must
sample from a caller's ``torch.Generator`` (reproducible rollouts without
touching the global RNG) and return log-probs of the unwarped distribution.
With one generator per context, a context's tokens depend on its own generator
only, not on which other contexts share the batch: the same episode comes out
whichever process, or batch, plays it (data-parallel training relies on it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections.abc import Sequence
from typing import TypeAlias

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from opd.agents.chat_tokens import ChatTokens
from opd.errors import ConfigError

__all__ = ["CausalLMPolicy", "Generation", "Generators", "SamplingConfig"]

# One generator for the whole batch (a row's draws then depend on the rows beside it), or one per row.
Generators: TypeAlias = torch.Generator | Sequence[torch.Generator] | None


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    max_new_tokens: int = 64  # per turn

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ConfigError(f"Invalid sampling settings: {self}. Need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1.")


@dataclasses.dataclass(frozen=True)
class Generation:
    token_ids: list[int]  # generated tokens, up to and including the stop token
    logprobs: list[float]  # log p(token) under the model, one per token


class CausalLMPolicy:
    """A causal LM with its tokenizer and chat template, acting token-in, token-out."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, name: str) -> None:
        if tokenizer.pad_token_id is None:
            raise ConfigError(f"Tokenizer of {name!r} has no pad token; set tokenizer.pad_token (e.g. to its eos token).")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.chat = ChatTokens(tokenizer)

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, device: str = "cpu", dtype: torch.dtype | None = None) -> CausalLMPolicy:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype).to(device)
        return cls(model, tokenizer, name=str(name_or_path))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def chat_template_hash(self) -> str:
        return hashlib.sha256((self.tokenizer.chat_template or "").encode()).hexdigest()[:16]

    @torch.no_grad()
    def generate(self, contexts: Sequence[Sequence[int]], sampling: SamplingConfig, *, generator: Generators = None) -> list[Generation]:
        """One turn for each context: sample until a stop token or ``max_new_tokens``.

        ``generator``: one for the batch, or a sequence with one per context.
        """
        if not contexts:
            return []
        if isinstance(generator, Sequence) and len(generator) != len(contexts):
            raise ConfigError(f"generate got {len(generator)} generators for {len(contexts)} contexts; give one per context.")
        input_ids, attention_mask = left_pad(contexts, self.tokenizer.pad_token_id, self.device)
        was_training = self.model.training
        self.model.eval()
        try:
            tokens_BN, logprobs_BN = self._sample(input_ids, attention_mask, sampling, generator)
        finally:
            self.model.train(was_training)
        return [self._trim(tokens, logprobs) for tokens, logprobs in zip(tokens_BN.tolist(), logprobs_BN.tolist(), strict=True)]

    def _sample(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, sampling: SamplingConfig, generator: Generators
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode with the KV cache; returns (B, N) token ids and their log-probs at temperature 1."""
        batch = input_ids.shape[0]
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        stop = torch.tensor(self.chat.stop_ids, device=self.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        tokens, logprobs = [], []
        cache_arg = (
            "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        )  # renamed in transformers 5
        cache, step_ids, step_positions = None, input_ids, position_ids
        for _ in range(sampling.max_new_tokens):
            inputs = {"input_ids": step_ids, "attention_mask": attention_mask, "position_ids": step_positions, cache_arg: cache}
            out = self.model(**inputs, use_cache=True)
            cache = out[cache_arg]
            logits_BV = out.logits[:, -1, :].float()
            next_B = pick_tokens(logits_BV, sampling, generator)
            next_B = torch.where(finished, torch.full_like(next_B, self.tokenizer.pad_token_id), next_B)
            tokens.append(next_B)
            logprobs.append(torch.log_softmax(logits_BV, dim=-1).gather(1, next_B[:, None]).squeeze(1))
            finished |= torch.isin(next_B, stop)
            if finished.all():
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)
            step_ids, step_positions = next_B[:, None], step_positions[:, -1:] + 1
        return torch.stack(tokens, dim=1), torch.stack(logprobs, dim=1)

    def _trim(self, tokens: list[int], logprobs: list[float]) -> Generation:
        stops = set(self.chat.stop_ids)
        end = next((i + 1 for i, token in enumerate(tokens) if token in stops), len(tokens))
        return Generation(tokens[:end], logprobs[:end])


def pick_tokens(logits_BV: torch.Tensor, sampling: SamplingConfig, generator: Generators) -> torch.Tensor:
    """Greedy at temperature 0, else sample from the temperature-scaled, top-p-truncated distribution.

    With a sequence of generators, row ``b`` draws from ``generator[b]`` alone.
    """
    if sampling.temperature == 0:
        return logits_BV.argmax(dim=-1)
    probs_BV = torch.softmax(logits_BV / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs_BV.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > sampling.top_p  # keep the smallest prefix reaching top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs_BV = torch.zeros_like(probs_BV).scatter(1, order, sorted_probs)
    if isinstance(generator, Sequence):
        return torch.cat([torch.multinomial(row_V[None], 1, generator=g)[0] for row_V, g in zip(probs_BV, generator, strict=True)])
    return torch.multinomial(probs_BV, 1, generator=generator).squeeze(1)


def left_pad(contexts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) ids and attention mask, padded on the left so every context ends at the last column."""
    length = max(len(c) for c in contexts)
    ids = torch.full((len(contexts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(contexts), length), dtype=torch.long)
    for row, context in enumerate(contexts):
        ids[row, length - len(context) :] = torch.tensor(list(context), dtype=torch.long)
        mask[row, length - len(context) :] = 1
    return ids.to(device), mask.to(device)
