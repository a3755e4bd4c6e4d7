"""Train / eval splits: deterministic, disjoint, covering, explicit splits honoured, any task source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from opd.envs import JsonlTasks, Task, ToolEnv, ToolSuite, Verdict, make_suite
from opd.envs.splits import SplitTasks, TaskSplit
from opd.errors import ConfigError


def jsonl(path: Path, count: int, **extra) -> Path:
    rows = [{"id": f"t{i}", "prompt": f"task {i}", "answer": i, **(extra if i < 3 else {})} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_fixed_set_splits_into_disjoint_covering_parts(tmp_path: Path) -> None:
    source = JsonlTasks(jsonl(tmp_path / "t.jsonl", 200))
    train, held_out = SplitTasks(source, "train"), SplitTasks(source, "eval")
    train_ids, eval_ids = {t.id for t in train.tasks}, {t.id for t in held_out.tasks}
    assert not train_ids & eval_ids and train_ids | eval_ids == {t.id for t in source.tasks}
    assert 20 <= len(eval_ids) <= 60  # about 20% of 200
    assert eval_ids == {t.id for t in SplitTasks(JsonlTasks(tmp_path / "t.jsonl"), "eval").tasks}  # the same every time
    other = {t.id for t in SplitTasks(source, "eval", TaskSplit(salt="another")).tasks}
    assert other != eval_ids  # the salt picks another held-out set
    rng = np.random.default_rng(0)
    assert all(held_out.sample(rng).id in eval_ids for _ in range(50))


def test_an_explicit_split_wins_over_the_hash(tmp_path: Path) -> None:
    source = JsonlTasks(jsonl(tmp_path / "t.jsonl", 30, split="eval"))
    assert {"t0", "t1", "t2"} <= {t.id for t in SplitTasks(source, "eval").tasks}
    assert {"t0", "t1", "t2"}.isdisjoint(t.id for t in SplitTasks(source, "train").tasks)
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "prompt": "p", "split": "test"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:1.*split must be 'train', 'eval'"):
        JsonlTasks(tmp_path / "bad.jsonl")


def test_an_empty_split_says_how_to_fix_it(tmp_path: Path) -> None:
    source = JsonlTasks(jsonl(tmp_path / "t.jsonl", 3, split="train"))
    with pytest.raises(ConfigError, match="eval split of JsonlTasks is empty"):
        SplitTasks(source, "eval")


def test_a_generated_suite_splits_by_task_id() -> None:
    train, held_out = make_suite("calculator", split="train"), make_suite("calculator", split="eval")
    rule = TaskSplit()
    rng = np.random.default_rng(1)
    assert all(rule.split_of(held_out.tasks.sample(rng)) == "eval" for _ in range(30))
    assert all(rule.split_of(train.tasks.sample(rng)) == "train" for _ in range(30))
    assert not make_suite("calculator").splits_tasks  # generated: kept apart by seed ranges unless asked


def test_the_split_passes_through_tool_env_by_name(tmp_path: Path) -> None:
    env = ToolEnv("calculator", split="eval", difficulty="easy")
    seen = {env.reset(seed=s)[1]["task_id"] for s in range(10)}
    assert all(TaskSplit().split_of(Task(id=i, prompt="")) == "eval" for i in seen)
    with pytest.raises(ConfigError, match="Unknown split 'test'"):
        make_suite("calculator", split="test")


def test_a_suite_over_a_fixed_set_splits_by_default(tmp_path: Path) -> None:
    base = make_suite("calculator")
    suite = ToolSuite("fixed", base.tools, JsonlTasks(jsonl(tmp_path / "t.jsonl", 10)), lambda t, a, c: Verdict(0.0, False))
    assert suite.splits_tasks and suite.with_split("eval").tasks.tasks
