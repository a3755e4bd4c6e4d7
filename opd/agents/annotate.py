"""Score stored episodes with another teacher, once: the store as an asset that any teacher can add to.

``annotate_store`` walks the episodes a filter selects that the teacher has not
annotated yet, asks the teacher about a batch of them, and adds its
annotations beside the existing ones under its own name, one transaction per
batch. An interruption (Ctrl-C, a crash, a killed job) loses at most the batch
in flight; running it again picks up the episodes still unannotated, so no
episode is scored twice and a paid teacher is paid once.

Any object with a ``name`` and ``annotate(episodes) -> list[Annotations]`` is a
teacher here: the white-box teacher, the black-box critic, the self-teacher,
or a served one. Before scoring, a teacher that scores token ids (it has a
tokenizer) must mean by each id what the episodes' tokenizer meant: the
existing preflight compares them, and a mismatch is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from opd.agents.preflight import preflight
from opd.errors import ConfigError
from opd.trajectories import Annotations, Episode, EpisodeFilter, TrajectoryStore, critique_ledger

__all__ = ["AnnotationProgress", "Annotator", "annotate_store", "check_tokenizers", "teacher_tokenizer"]

logger = logging.getLogger(__name__)


class Annotator(Protocol):
    """What ``annotate_store`` needs of a teacher."""

    name: str

    def annotate(self, episodes: Sequence[Episode]) -> list[Annotations]: ...


@dataclasses.dataclass(frozen=True)
class AnnotationProgress:
    """Where an annotation pass stands, and what it has cost so far."""

    teacher: str
    done: int  # episodes annotated by this pass
    total: int  # episodes this pass set out to annotate (those still unannotated by the teacher when it began)
    already: int  # matching episodes the teacher had annotated before this pass: skipped, not scored again
    empty: int = 0  # episodes with no policy token (a sandbox failed first): nothing to score
    tokens_scored: int = 0  # policy tokens the teacher gave top-k log-probs for
    tokens_read: int = 0  # every token of the annotated episodes: what a white-box teacher's forward passes read
    steps_graded: int = 0  # steps the teacher critiqued
    usage: Mapping[str, float | None] = dataclasses.field(default_factory=dict)  # critique ledger: calls, tokens, dollars
    seconds: float = 0.0

    def describe(self) -> str:
        parts = [f"{self.done}/{self.total} episodes annotated by {self.teacher}", f"{self.already} already done"]
        if self.empty:
            parts.append(f"{self.empty} without policy tokens")
        if self.tokens_scored:
            parts.append(f"{self.tokens_scored:,} tokens scored ({self.tokens_read:,} read)")
        if self.steps_graded:
            cost = self.usage.get("cost_usd")
            dollars = "cost unknown" if cost is None else f"${cost:.4f}"
            parts.append(f"{self.steps_graded} steps graded, {self.usage.get('calls', 0):.0f} calls, {dollars}")
        parts.append(f"{self.seconds:.1f}s")
        return "; ".join(parts)


Progress = Callable[[AnnotationProgress], None]


def annotate_store(
    store: TrajectoryStore,
    teacher: Annotator,
    where: EpisodeFilter = EpisodeFilter(),
    *,
    batch_size: int = 8,
    limit: int | None = None,
    progress: Progress | None = None,
    check: bool = True,
) -> AnnotationProgress:
    """Annotate the episodes matching ``where`` that ``teacher`` has not annotated; returns the totals.

    ``limit`` bounds the episodes scored by this call (a budget); ``progress`` is
    called after every batch is stored. ``check=False`` skips the tokenizer check.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
    pending = dataclasses.replace(where, not_annotated_by=teacher.name)
    total = store.count_episodes(pending)
    if limit is not None:
        total = min(total, limit)
    state = AnnotationProgress(teacher.name, 0, total, store.count_episodes(dataclasses.replace(where, annotated_by=teacher.name)))
    if check and total:
        check_tokenizers(teacher, store.tokenizers(pending))
    started = time.perf_counter()
    for episodes in store.iter_episodes(pending, batch_size=batch_size):
        episodes = episodes[: total - state.done - state.empty]
        if not episodes:
            break
        state = _annotate_batch(store, teacher, episodes, state)
        state = dataclasses.replace(state, seconds=time.perf_counter() - started)
        if progress is not None:
            progress(state)
    return state


def _annotate_batch(store: TrajectoryStore, teacher: Annotator, episodes: list[Episode], state: AnnotationProgress) -> AnnotationProgress:
    """Score one batch and store each episode's annotations; the totals after it."""
    scorable = [e for e in episodes if any(s.num_policy_tokens for s in e.steps)]
    annotations = teacher.annotate(scorable) if scorable else []
    for episode, annotation in zip(scorable, annotations, strict=True):
        store.add_annotations(episode.id, annotation)
    critiques = [c for a in annotations for c in a.critiques]
    usage = critique_ledger(critiques)
    totals = {k: (None if v is None or state.usage.get(k, 0) is None else state.usage.get(k, 0) + v) for k, v in usage.items()}
    return dataclasses.replace(
        state,
        done=state.done + len(scorable),
        empty=state.empty + len(episodes) - len(scorable),
        tokens_scored=state.tokens_scored + sum(a.token_ids.shape[0] for x in annotations for a in x.token_logprobs),
        tokens_read=state.tokens_read + sum(e.num_tokens for e, x in zip(scorable, annotations, strict=True) if x.token_logprobs),
        steps_graded=state.steps_graded + len(critiques),
        usage=totals,
    )


def teacher_tokenizer(teacher: Any) -> PreTrainedTokenizerBase | None:
    """The tokenizer whose ids ``teacher`` scores, or None for a teacher that reads text (a critic)."""
    tokenizer = getattr(teacher, "tokenizer", None)
    if tokenizer is None and (student := getattr(teacher, "student", None)) is not None:  # the self-teacher scores with the student's
        tokenizer = getattr(student, "tokenizer", None)
    return tokenizer


def check_tokenizers(teacher: Any, episode_tokenizers: Sequence[tuple[str, str]]) -> None:
    """Refuse a teacher that would score token ids meaning something else than when the episodes were written.

    ``episode_tokenizers``: the distinct (tokenizer name or path, chat template hash) of the episodes.
    The episodes' tokenizer is loaded and compared by the preflight (vocabulary, special tokens, chat
    template); where it cannot be loaded any more, the recorded chat template hash is compared.
    """
    tokenizer = teacher_tokenizer(teacher)
    if tokenizer is None:
        return
    for name, template_hash in episode_tokenizers:
        if not name:
            continue  # text-only episodes (a scripted expert without tokens): nothing to score by id
        try:
            theirs = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as exc:
            own = hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest()[:16]
            if template_hash and own != template_hash:
                raise ConfigError(
                    f"Teacher {teacher.name!r} cannot score these episodes: their tokenizer {name!r} cannot be loaded "
                    f"({type(exc).__name__}) and its recorded chat template (hash {template_hash}) differs from the teacher's ({own}). "
                    "Use a teacher with the episodes' tokenizer, or filter the episodes (--run, --suite)."
                ) from exc
            logger.warning("Could not load tokenizer %r to check it against %r; the chat templates match.", name, teacher.name)
            continue
        report = preflight(theirs, tokenizer)
        if not report.ok:
            raise ConfigError(
                f"Teacher {teacher.name!r} cannot score episodes written with tokenizer {name!r}: {report.describe()}\n"
                "Its scores would be for tokens the student never wrote. Use a teacher with the same tokenizer, "
                "or filter the episodes (--run, --suite) to those it matches."
            )
