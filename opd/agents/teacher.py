"""``WhiteBoxTeacher``: a local transformers model that scores the exact tokens a student produced.

An episode is scored in one forward pass over its whole token sequence (not
one per step): under a causal model the logits at every position depend only
on the tokens before it, so one pass gives every step's teacher distribution
at once. Several episodes share a pass, right-padded, for throughput.

It returns, for every policy token of every step, the teacher's top-k
log-probabilities with their token ids and the probability mass outside the
top k (the compact form the store keeps), or the full logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from opd.errors import ConfigError
from opd.trajectories import Annotations, Episode, TokenLogprobs

__all__ = ["WhiteBoxTeacher"]


class WhiteBoxTeacher:
    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, name: str, k: int = 64, batch_tokens: int = 16_384
    ) -> None:
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.k = min(k, model.config.vocab_size)
        self.batch_tokens = batch_tokens  # padded tokens per forward pass

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, k: int = 64, device: str = "cpu", dtype: torch.dtype | None = None) -> WhiteBoxTeacher:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype).to(device)
        return cls(model, tokenizer, name=str(name_or_path), k=k)

    @torch.no_grad()
    def logprobs(self, episodes: Sequence[Episode]) -> list[torch.Tensor]:
        """Per episode, (N, V) float32 log-probs: row t is the teacher's distribution for token t (row 0 is NaN)."""
        results: list[torch.Tensor] = []
        for group in self._groups(episodes):
            lengths = [e.num_tokens for e in group]
            ids = torch.full((len(group), max(lengths)), self.tokenizer.pad_token_id or 0, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, episode in enumerate(group):
                ids[row, : lengths[row]] = torch.from_numpy(episode.token_ids.astype(np.int64))
                mask[row, : lengths[row]] = 1
            device = next(self.model.parameters()).device
            logits_BTV = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logprobs_BTV = torch.log_softmax(logits_BTV, dim=-1)
            for row, length in enumerate(lengths):
                shifted = torch.full((length, logprobs_BTV.shape[-1]), float("nan"), device=logprobs_BTV.device)
                if length > 1:  # the logits at t-1 predict token t
                    shifted[1:] = logprobs_BTV[row, : length - 1]
                results.append(shifted.cpu())
        return results

    def annotate(self, episodes: Sequence[Episode]) -> list[Annotations]:
        """Top-k log-probs with tail mass for every policy token of every step, one Annotations per episode."""
        annotations = []
        for episode, logprobs_NV in zip(episodes, self.logprobs(episodes), strict=True):
            annotations.append(Annotations(token_logprobs=tuple(self._topk_per_step(episode, logprobs_NV))))
        return annotations

    def _topk_per_step(self, episode: Episode, logprobs_NV: torch.Tensor) -> list[TokenLogprobs]:
        out, start = [], 0
        for step in episode.steps:
            positions = start + np.flatnonzero(step.policy_mask)
            start += len(step.token_ids)
            if positions.size and positions[0] == 0:
                raise ConfigError(f"Episode {episode.id}: the first token is the policy's, so nothing conditions it; add a prompt.")
            top_values, top_ids = logprobs_NV[torch.from_numpy(positions)].topk(self.k, dim=-1)
            tail = (1.0 - top_values.double().exp().sum(dim=-1)).clamp(min=0.0)
            out.append(
                TokenLogprobs(
                    teacher=self.name,
                    step_index=step.index,
                    token_ids=top_ids.numpy().astype(np.int32),
                    logprobs=top_values.numpy().astype(np.float16),
                    tail_mass=tail.numpy().astype(np.float32),
                )
            )
        return out

    def _groups(self, episodes: Sequence[Episode]) -> list[list[Episode]]:
        """Consecutive episodes packed so that each forward pass holds about ``batch_tokens`` padded tokens."""
        groups: list[list[Episode]] = []
        for episode in episodes:
            if groups and max(e.num_tokens for e in [*groups[-1], episode]) * (len(groups[-1]) + 1) <= self.batch_tokens:
                groups[-1].append(episode)
            else:
                groups.append([episode])
        return groups
