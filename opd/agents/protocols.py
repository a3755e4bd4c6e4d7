"""The two small protocols every inference backend implements: a ``Policy`` that acts, a ``Teacher`` that annotates.

The training loop, evaluation and rollouts only talk to these. Today's
in-process classes are one backend each (``CausalLMPolicy``, ``WhiteBoxTeacher``,
``SelfTeacher``, ``BlackBoxTeacher``); the vLLM policy (``opd.agents.vllm_policy``)
and the served teacher (``opd.agents.served_teacher``) are others. Which one a
run uses is configuration (``opd.agents.engines.InferenceConfig``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from transformers import PreTrainedTokenizerBase

from opd.agents.chat_tokens import ChatTokens
from opd.trajectories import Annotations, Episode

if TYPE_CHECKING:
    import torch

    from opd.agents.policy import Generation, Generators, SamplingConfig

__all__ = ["Policy", "Teacher", "WeightReceiver"]


@runtime_checkable
class Policy(Protocol):
    """Token-in, token-out generation for a batch of contexts.

    ``generate`` returns, per context, the sampled token ids up to and including
    a stop token (end of turn or of a tool call) and their log-probs at
    temperature 1 (the distribution being distilled, not the sampling one).
    ``generator`` holds one seed per context: a ``torch.Generator`` per row, from
    which a backend draws its per-request seeds, so a context's tokens depend on
    its own generator only, not on the rows batched with it.
    """

    name: str
    tokenizer: PreTrainedTokenizerBase
    chat: ChatTokens

    @property
    def chat_template_hash(self) -> str: ...

    @property
    def max_context_tokens(self) -> int: ...

    @property
    def device(self) -> torch.device: ...  # where the per-row generators live

    def generate(
        self, contexts: Sequence[Sequence[int]], sampling: SamplingConfig, *, generator: Generators = None
    ) -> list[Generation]: ...


@runtime_checkable
class Teacher(Protocol):
    """Annotates episodes: one ``Annotations`` per episode, in order, each naming the teacher as ``name``."""

    name: str

    def annotate(self, episodes: Sequence[Episode]) -> list[Annotations]: ...


@runtime_checkable
class WeightReceiver(Protocol):
    """A policy backend that holds its own copy of the student's weights (an inference engine) and must be sent new ones."""

    def push_weights(self, model: torch.nn.Module) -> float:
        """Make the backend generate with ``model``'s current weights; returns the seconds it took."""
        ...
