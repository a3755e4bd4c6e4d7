"""``WhiteBoxTeacher``: a local transformers model that scores the exact tokens a student produced.

An episode is scored in one forward pass over its whole token sequence (not
one per step): under a causal model the logits at every position depend only
on the tokens before it, so one pass gives every step's teacher distribution
at once. Several episodes share a pass, right-padded, for throughput.

It returns, for every policy token of every step, the teacher's top-k
log-probabilities with their token ids and the probability mass outside the
top k (the compact form the store keeps), computed a chunk of positions at a
time from the final hidden states, with the tail mass exact (0 at k = V); or,
for inspection, the full log-probs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from opd.agents.topk_scoring import TopKRows, final_hidden, topk_rows
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
        self.chunk_rows: int | None = None  # positions per top-k chunk; None: about 2**25 logits per chunk

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, k: int = 64, device: str = "cpu", dtype: torch.dtype | None = None) -> WhiteBoxTeacher:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype).to(device)
        return cls(model, tokenizer, name=str(name_or_path), k=k)

    @torch.no_grad()
    def logprobs(self, episodes: Sequence[Episode]) -> list[torch.Tensor]:
        """Per episode, (N, V) float32 log-probs: row t is the teacher's distribution for token t (row 0 is NaN).

        For inspection and tests: this holds the full (N, V) tensor that ``annotate`` avoids.
        """
        results: list[torch.Tensor] = []
        for group in self._groups(episodes):
            lengths = [e.num_tokens for e in group]
            ids_BT, attention_BT = self._padded(group)
            logits_BTV = self.model(input_ids=ids_BT, attention_mask=attention_BT).logits.float()
            logprobs_BTV = torch.log_softmax(logits_BTV, dim=-1)
            for row, length in enumerate(lengths):
                shifted = torch.full((length, logprobs_BTV.shape[-1]), float("nan"), device=logprobs_BTV.device)
                if length > 1:  # the logits at t-1 predict token t
                    shifted[1:] = logprobs_BTV[row, : length - 1]
                results.append(shifted.cpu())
        return results

    @torch.no_grad()
    def annotate(self, episodes: Sequence[Episode]) -> list[Annotations]:
        """Top-k log-probs with exact tail mass for every policy token of every step, one Annotations per episode.

        Only the policy positions are projected through the lm_head, a chunk of rows at a time
        (``opd.agents.topk_scoring``): no (N, V) tensor is made, whatever the vocabulary.
        """
        annotations = []
        for group in self._groups(episodes):
            hidden_BTD = final_hidden(self.model, *self._padded(group))
            for row, episode in enumerate(group):
                steps = self._policy_positions(episode)
                # The hidden state at t - 1 predicts token t.
                positions = torch.from_numpy(np.concatenate([p for _, p in steps]) - 1).to(hidden_BTD.device)
                top = topk_rows(self.model, hidden_BTD[row].index_select(0, positions), self.k, chunk_rows=self.chunk_rows)
                annotations.append(Annotations(token_logprobs=tuple(self._per_step(steps, top))))
        return annotations

    def _policy_positions(self, episode: Episode) -> list[tuple[int, np.ndarray]]:
        """(step index, positions in the episode of that step's policy tokens) for every step."""
        out, start = [], 0
        for step in episode.steps:
            positions = start + np.flatnonzero(step.policy_mask)
            start += len(step.token_ids)
            if positions.size and positions[0] == 0:
                raise ConfigError(f"Episode {episode.id}: the first token is the policy's, so nothing conditions it; add a prompt.")
            out.append((step.index, positions))
        return out

    def _per_step(self, steps: list[tuple[int, np.ndarray]], top: TopKRows) -> list[TokenLogprobs]:
        out, start = [], 0
        for index, positions in steps:
            rows = slice(start, start + positions.size)
            start += positions.size
            out.append(
                TokenLogprobs(
                    teacher=self.name,
                    step_index=index,
                    token_ids=top.token_ids[rows].cpu().numpy().astype(np.int32),
                    logprobs=top.logprobs[rows].cpu().numpy().astype(np.float16),
                    tail_mass=top.tail_mass[rows].cpu().numpy().astype(np.float32),
                )
            )
        return out

    def _padded(self, group: Sequence[Episode]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) right-padded token ids and attention mask of ``group``, on the model's device."""
        lengths = [e.num_tokens for e in group]
        ids = torch.full((len(group), max(lengths)), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, episode in enumerate(group):
            ids[row, : lengths[row]] = torch.from_numpy(episode.token_ids.astype(np.int64))
            mask[row, : lengths[row]] = 1
        device = next(self.model.parameters()).device
        return ids.to(device), mask.to(device)

    def _groups(self, episodes: Sequence[Episode]) -> list[list[Episode]]:
        """Consecutive episodes packed so that each forward pass holds about ``batch_tokens`` padded tokens."""
        groups: list[list[Episode]] = []
        for episode in episodes:
            if groups and max(e.num_tokens for e in [*groups[-1], episode]) * (len(groups[-1]) + 1) <= self.batch_tokens:
                groups[-1].append(episode)
            else:
                groups.append([episode])
        return groups
