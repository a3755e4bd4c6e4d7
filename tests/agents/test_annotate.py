"""`opd annotate` and ``annotate_store`` on tiny real models: beside existing annotations, resumable, refusing a mismatched tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer
from typer.testing import CliRunner

from opd.agents.annotate import annotate_store
from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.rollout import collect_episodes
from opd.agents.teacher import WhiteBoxTeacher
from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.cli.app import app
from opd.envs import ToolEnv
from opd.errors import ConfigError
from opd.trajectories import EpisodeFilter, Run, TrajectoryStore

EPISODES = 6


@pytest.fixture(scope="module")
def teachers(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A teacher with the student's tokenizer, and one with a tokenizer of its own (different ids)."""
    directory = tmp_path_factory.mktemp("annotate-teachers")
    build_tiny_model(AutoTokenizer.from_pretrained(tiny_model_dir), directory / "same", layers=1, hidden=24, heads=2, seed=1)
    other = build_word_tokenizer(expert_texts(ToolEnv("inventory", difficulty="easy"), 20), directory / "other", numbers=range(0, 50))
    build_tiny_model(other, directory / "other", layers=1, hidden=24, heads=2, seed=2)
    return directory / "same", directory / "other"


@pytest.fixture
def store_path(policy: CausalLMPolicy, tmp_path: Path) -> Path:
    """A store with the tiny student's episodes, each already annotated by the student itself (the run's teacher)."""
    path = tmp_path / "store.db"
    envs = [ToolEnv("calculator", difficulty="easy", max_turns=2) for _ in range(EPISODES)]
    episodes = collect_episodes(
        policy, envs, list(range(EPISODES)), run_id=(run := Run(name="annotate")).id, sampling=SamplingConfig(max_new_tokens=8),
        generator=torch.Generator().manual_seed(0), suite_options={"difficulty": "easy"},
    )  # fmt: skip
    first = WhiteBoxTeacher(policy.model, policy.tokenizer, name="first", k=4)
    with TrajectoryStore(path) as store:
        store.add_run(run)
        for episode, annotations in zip(episodes, first.annotate(episodes), strict=True):
            store.write_episode(episode)
            store.add_annotations(episode.id, annotations)
    return path


class Counting:
    """A real teacher, counting the episodes it is asked to score (composition, not a double)."""

    def __init__(self, teacher: WhiteBoxTeacher, *, interrupt_after: int | None = None) -> None:
        self.teacher, self.name, self.tokenizer = teacher, teacher.name, teacher.tokenizer
        self.scored: list[str] = []
        self.interrupt_after = interrupt_after

    def annotate(self, episodes):
        if self.interrupt_after is not None and len(self.scored) >= self.interrupt_after:
            raise KeyboardInterrupt  # Ctrl-C while the teacher works on the next batch
        self.scored.extend(e.id for e in episodes)
        return self.teacher.annotate(episodes)


def test_a_second_teacher_sits_beside_the_first_and_resumes_without_scoring_twice(store_path: Path, teachers) -> None:
    second = WhiteBoxTeacher.from_pretrained(str(teachers[0]), k=4)
    interrupted = Counting(second, interrupt_after=2)
    with TrajectoryStore(store_path) as store:
        with pytest.raises(KeyboardInterrupt):
            annotate_store(store, interrupted, batch_size=2)
        assert store.count_episodes(EpisodeFilter(annotated_by=second.name)) == 2  # the batch in flight is lost, nothing else
        resumed = Counting(second)
        result = annotate_store(store, resumed, batch_size=2)
        assert (result.done, result.already, result.total) == (EPISODES - 2, 2, EPISODES - 2)
        assert not set(resumed.scored) & set(interrupted.scored) and len(resumed.scored) == EPISODES - 2
        assert store.count_episodes(EpisodeFilter(annotated_by=second.name)) == EPISODES
        assert store.count_episodes(EpisodeFilter(annotated_by="first")) == EPISODES  # the first teacher's are untouched
        assert next(store.iter_episodes())[0].annotations.teachers == sorted(["first", second.name])
        resumed_rows = [
            a.token_ids.shape[0] for b in store.iter_episodes() for e in b if e.id in resumed.scored
            for a in e.annotations.token_logprobs if a.teacher == second.name
        ]  # fmt: skip
        assert result.tokens_scored == sum(resumed_rows) > 0
        again = annotate_store(store, Counting(second), batch_size=2)
        assert again.done == 0 and again.already == EPISODES


def test_the_annotations_equal_a_fresh_scoring(store_path: Path, teachers) -> None:
    second = WhiteBoxTeacher.from_pretrained(str(teachers[0]), k=4)
    with TrajectoryStore(store_path) as store:
        annotate_store(store, second, batch_size=4)
        episodes = [e for batch in store.iter_episodes() for e in batch]
    for episode, fresh in zip(episodes, second.annotate(episodes), strict=True):
        stored = tuple(a for a in episode.annotations.token_logprobs if a.teacher == second.name)
        assert stored == fresh.token_logprobs


def test_a_teacher_with_another_tokenizer_is_refused(store_path: Path, teachers) -> None:
    other = WhiteBoxTeacher.from_pretrained(str(teachers[1]), k=4)
    with TrajectoryStore(store_path) as store, pytest.raises(ConfigError, match="vocabularies differ"):
        annotate_store(store, other)
    with TrajectoryStore(store_path) as store:
        assert store.count_episodes(EpisodeFilter(annotated_by=other.name)) == 0


def test_the_command_shows_progress_and_cost_in_a_file_and_filters(store_path: Path, teachers) -> None:
    runner = CliRunner()
    args = ["annotate", "--store", str(store_path), "--teacher", str(teachers[0]), "--k", "4", "--batch-size", "2"]
    # --run takes the run's name as `opd runs list` shows it (it used to take only the full id, and a name matched nothing).
    result = runner.invoke(app, [*args, "--limit", "3", "--suite", "calculator", "--run", "annotate"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "3/3 episodes annotated" in result.output and "tokens scored" in result.output and "done:" in result.output
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"{EPISODES - 3}/{EPISODES - 3} episodes annotated" in result.output and "3 already done" in result.output
    assert "0/0 episodes" in runner.invoke(app, [*args, "--suite", "inventory"], env={"COLUMNS": "200"}).output
    unknown = runner.invoke(app, [*args, "--run", "annotat"], env={"COLUMNS": "200"})
    assert unknown.exit_code == 2 and "No run with the id, id prefix or name 'annotat'" in unknown.output
    refused = runner.invoke(app, ["annotate", "--store", str(store_path), "--teacher", str(teachers[1])], env={"COLUMNS": "200"})
    assert refused.exit_code == 2 and "vocabularies differ" in refused.output
