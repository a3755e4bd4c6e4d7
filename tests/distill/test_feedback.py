"""Every cell of the taxonomy through `opd train`, a run against a faulty critic server, and the self-teacher."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from chat_server import chat_app, serve
from judges import calculator_judge
from typer.testing import CliRunner

from opd.agents.critic import CriticConfig
from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.agents.rollout import collect_episodes
from opd.agents.self_teacher import SelfTeacher, SelfTeacherConfig
from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.cli.app import app
from opd.distill.config import TrainConfig
from opd.distill.losses import LossConfig
from opd.distill.taxonomy import CELLS, Cell
from opd.distill.train import best_successes, train
from opd.envs import ToolEnv
from opd.trajectories import EVALUATION_KIND, EpisodeFilter, TrajectoryStore

OPTIONS = {"difficulty": "easy", "prompt_style": "terse", "max_value": 99}
PRIVILEGED_WORDS = "(Privileged, for grading: the verified answer is a verified solution is: then)"
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("feedback-models")
    env = ToolEnv("calculator", **OPTIONS)
    texts = expert_texts(env, 50)
    texts.append(PRIVILEGED_WORDS)  # a word-level tokenizer knows only the words it was fitted to
    tokenizer = build_word_tokenizer(texts, directory / "student", numbers=range(-100, 200))
    build_tiny_model(tokenizer, directory / "student", layers=1, hidden=16, heads=2, seed=0)
    build_tiny_model(tokenizer, directory / "teacher", layers=1, hidden=32, heads=2, seed=1)
    return directory / "student", directory / "teacher"


@pytest.fixture(scope="module")
def judge_server():
    app_, log = chat_app(calculator_judge)
    with serve(app_) as base:
        yield base, log


def run_settings(cell: Cell, models: tuple[Path, Path], api_base: str, tmp_path: Path) -> dict[str, Any]:
    settings = json.loads(json.dumps(cell.settings).replace("TEACHER_DIR", str(models[1])))
    if "critic" in settings:
        settings["critic"].update(api_base=api_base, top_logprobs=5)
    return {
        "student": str(models[0]),
        "suite_options": OPTIONS,
        "store": str(tmp_path / "store.db"),
        "output_dir": str(tmp_path / "out"),
        "updates": 2,
        "episodes_per_update": 3,
        "eval_every": 0,
        "eval_episodes": 3,
        "checkpoint_every": 0,
        "teacher_k": 8,
        "sampling": {"max_new_tokens": 12},
        "tensorboard": False,
        "max_turns": 3,
        **settings,
    }


def test_the_readme_table_names_every_cell() -> None:
    readme = README.read_text()
    for cell in CELLS:
        row = f"| {cell.signal} | {cell.access} | {cell.granularity} |"
        assert row in readme, f"README's taxonomy table lacks {cell.name}"
        line = readme[readme.index(row) :].split("\n", 1)[0]
        assert (cell.reason in line) if cell.settings is None else ("`" in line), line


@pytest.mark.slow
@pytest.mark.parametrize("cell", [c for c in CELLS if c.settings is not None], ids=lambda c: c.name)
def test_every_cell_trains_through_opd_train(cell: Cell, models, judge_server, tmp_path: Path) -> None:
    api_base, _ = judge_server
    settings = run_settings(cell, models, api_base, tmp_path)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(settings))
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    assert "held-out success" in result.output
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [line["update"] for line in lines] == [1, 2]
    with TrajectoryStore(settings["store"]) as store:
        (run,) = [r for r in store.runs() if r.config.get("kind") != EVALUATION_KIND]  # training stores its evaluation too
        episodes = [e for batch in store.iter_episodes(EpisodeFilter(run_id=run.id)) for e in batch]
    per_update = 3 * settings.get("samples_per_task", 1)
    assert len(episodes) == 2 * per_update
    if "critic" in settings:
        assert "critic:" in result.output and all(e.annotations.critiques for e in episodes)
    if LossConfig(**settings["loss"]).needs_logits:
        assert all(e.annotations.token_logprobs for e in episodes)


@pytest.mark.slow
def test_a_run_survives_a_faulty_critic_and_counts_what_it_could_not_grade(models, tmp_path: Path) -> None:
    faults = {"error": 0.15, "rate_limit": 0.1, "timeout": 0.1, "garbage": 0.1, "unparseable": 0.15}
    app_, log = chat_app(calculator_judge, faults=faults, seed=1, slow_s=2.0)
    with serve(app_) as base:
        critic = CriticConfig(model="openai/judge", api_base=base, timeout_s=0.5, max_retries=1, backoff_s=0.01, parse_retries=0)
        config = TrainConfig(
            student=str(models[0]), critic=critic, loss=LossConfig(kind="step_critique"), suite_options=OPTIONS,
            store=str(tmp_path / "store.db"), output_dir=str(tmp_path / "out"), updates=3, episodes_per_update=8,
            eval_every=0, eval_episodes=2, checkpoint_every=0, sampling=SamplingConfig(max_new_tokens=12), tensorboard=False, max_turns=3,
        )  # fmt: skip
        result = train(config)
    assert result.updates == 3 and all(v > 0 for v in log.faults.values()), log.faults
    with TrajectoryStore(config.store) as store:
        episodes = [e for batch in store.iter_episodes(EpisodeFilter(run_id=result.run_id)) for e in batch]
    assert len(episodes) == 24  # every episode stored
    critiques = [c for e in episodes for c in e.annotations.critiques]
    unannotated = [c for c in critiques if c.score is None]
    assert unannotated and all(c.error for c in unannotated) and len(unannotated) < len(critiques)
    assert result.critique_usage["unannotated"] == len(unannotated) and result.critique_usage["steps"] == len(critiques)
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert sum(line["critic/unannotated"] for line in lines) == len(unannotated)
    assert sum(line["critic/calls"] for line in lines) == result.critique_usage["calls"] > 0


def student_episodes(models, n: int = 3):
    policy = CausalLMPolicy.from_pretrained(str(models[0]))
    envs = [ToolEnv("calculator", max_turns=3, **OPTIONS) for _ in range(n)]
    episodes = collect_episodes(policy, envs, list(range(n)), run_id="r", sampling=SamplingConfig(max_new_tokens=12), suite_options=OPTIONS)
    return policy, episodes


def test_the_self_teacher_sees_the_answer_and_scores_exactly_the_students_tokens(models) -> None:
    policy, episodes = student_episodes(models)
    teacher = SelfTeacher(policy, SelfTeacherConfig(context="answer"), k=4)
    for episode in episodes:
        privileged = teacher.privileged(episode)
        answer = ToolEnv("calculator", **OPTIONS)
        answer.reset(seed=episode.seed)
        prompt = policy.tokenizer.decode(privileged.steps[0].token_ids[~privileged.steps[0].policy_mask])
        assert f"the verified answer is {answer.task.answer}" in prompt
        assert privileged.steps[1:] == episode.steps[1:]
        generated = episode.steps[0].token_ids[episode.steps[0].policy_mask]
        assert privileged.steps[0].token_ids[privileged.steps[0].policy_mask].tolist() == generated.tolist()
    annotations = teacher.annotate(episodes)
    for episode, annotation in zip(episodes, annotations, strict=True):
        assert [a.token_ids.shape for a in annotation.token_logprobs] == [(s.num_policy_tokens, 4) for s in episode.steps]
        assert annotation.token_logprobs[0].teacher == "self:answer"


def test_an_ema_self_teacher_trails_the_student(models) -> None:
    policy, _ = student_episodes(models, n=1)
    teacher = SelfTeacher(policy, SelfTeacherConfig(context="none", ema_decay=0.5), k=4)
    before = next(teacher.ema.parameters()).detach().clone()
    student_param = next(policy.model.parameters())
    student_param.data.add_(1.0)
    teacher.update()
    after = next(teacher.ema.parameters())
    assert np.allclose(after.detach().numpy(), (before + 0.5).numpy(), atol=1e-6)
    student_param.data.sub_(1.0)


def test_best_successes_keeps_each_tasks_best_verified_success(models) -> None:
    _, episodes = student_episodes(models, n=2)
    a, b = episodes
    pool = [
        dataclasses.replace(a, success=True, reward=0.5),
        dataclasses.replace(a, success=True, reward=1.0, id="best"),
        dataclasses.replace(a, success=False, reward=2.0),
        dataclasses.replace(b, success=False),
    ]
    assert [e.id for e in best_successes(pool)] == ["best"]


def test_a_self_teacher_without_privilege_agrees_with_the_students_own_logprobs(models) -> None:
    """Scoring alignment check: an EMA copy that has not moved yet is the student, so it must give the sampled log-probs."""
    from opd.distill.batch import make_batch

    policy, episodes = student_episodes(models)
    teacher = SelfTeacher(policy, SelfTeacherConfig(context="none", ema_decay=0.5), k=len(policy.tokenizer))  # every token in the top k
    annotated = [dataclasses.replace(e, annotations=a) for e, a in zip(episodes, teacher.annotate(episodes), strict=True)]
    batch = make_batch(annotated, teacher=teacher.name)
    mask = batch.policy_BT
    # The store keeps teacher log-probs in float16: spacing 2**-8 between 4 and 8, so half of that is the rounding error.
    assert np.allclose(batch.teacher_sampled_BT[mask].numpy(), batch.sampled_logprobs_BT[mask].numpy(), atol=2**-9)
