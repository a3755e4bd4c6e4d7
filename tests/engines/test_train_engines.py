"""`opd train` on the three deployments: in-process, a served teacher (opd serve-teacher, vLLM), rollouts on vLLM.

Every arm starts from the same student, which a few updates measurably improve (tests/tiny_models.py), and must
end beyond noise above its start on the same held-out tasks, and within noise of the in-process arm.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from servers import MAX_K
from tiny_models import LEARNABLE_OPTIONS
from typer.testing import CliRunner

from opd.agents.engines import InferenceConfig, StudentEngineConfig, TeacherEngineConfig
from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.cli.app import app
from opd.distill.config import TrainConfig
from opd.distill.evaluate import EvalResult, evaluate
from opd.distill.train import TrainResult, train
from opd.trajectories import EpisodeFilter, TrajectoryStore

pytestmark = pytest.mark.slow
SETTINGS = dict(
    suite_options=LEARNABLE_OPTIONS, updates=3, episodes_per_update=16, eval_every=0, eval_episodes=100, checkpoint_every=0,
    teacher_k=MAX_K, tensorboard=False, max_turns=3, learning_rate=1e-3,
)  # fmt: skip
SAMPLING = SamplingConfig(max_new_tokens=20)  # a tool call is 16 tokens


def settings(engine_models, tmp_path: Path, **overrides) -> dict:
    student, teacher = engine_models
    return {
        "student": str(student), "teacher": str(teacher), "store": str(tmp_path / "store.db"), "output_dir": str(tmp_path / "out"),
        **SETTINGS, **overrides,
    }  # fmt: skip


def episodes_of(store_path: Path, result: TrainResult) -> list:
    with TrajectoryStore(store_path) as store:
        return [e for batch in store.iter_episodes(EpisodeFilter(run_id=result.run_id)) for e in batch]


def metrics(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def start(engine_models) -> EvalResult:
    """The student start on the held-out tasks every arm's final evaluation plays (greedy, the same seeds)."""
    student = CausalLMPolicy.from_pretrained(str(engine_models[0]))
    return evaluate(student, "calculator", suite_options=LEARNABLE_OPTIONS, episodes=SETTINGS["eval_episodes"], max_turns=3)[0]


@pytest.fixture(scope="module")
def in_process(engine_models, tmp_path_factory) -> tuple[Path, TrainResult]:
    directory = tmp_path_factory.mktemp("in-process")
    return directory, train(TrainConfig(**settings(engine_models, directory), sampling=SAMPLING))


def interval(result: TrainResult | dict) -> tuple[float, float]:
    """The 95% interval of the final held-out success: of a result, or of a run's last metrics row."""
    if isinstance(result, dict):
        return result["eval/ci_low"], result["eval/ci_high"]
    return result.final_eval.ci_low, result.final_eval.ci_high


def improved(result: TrainResult | dict, start: EvalResult) -> bool:
    """The trained student's 95% interval lies wholly above the start's: better beyond noise."""
    return interval(result)[0] > start.ci_high


def overlap(a: TrainResult | dict, b: TrainResult) -> bool:
    """The two held-out success rates' 95% intervals overlap: equal within noise."""
    (a_low, a_high), (b_low, b_high) = interval(a), interval(b)
    return a_low <= b_high and b_low <= a_high


def test_in_process_training_improves_the_student_on_held_out_tasks(start, in_process) -> None:
    result = in_process[1]
    assert result.updates == 3 and start.ci_high < 0.6  # room to improve
    assert improved(result, start), f"{start.describe()} -> {result.final_eval.describe()}"


def test_opd_train_with_opd_serve_teacher_gets_the_in_process_teachers_scores(
    engine_models, opd_teacher_url, start, in_process, tmp_path
) -> None:
    config = settings(engine_models, tmp_path, sampling={"max_new_tokens": SAMPLING.max_new_tokens})
    config["inference"] = {"teacher": {"backend": "http", "urls": [opd_teacher_url], "api": "opd"}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    run = CliRunner().invoke(app, ["train", str(tmp_path / "train.yaml")])
    assert run.exit_code == 0, run.output
    assert "held-out success" in run.output
    reference_dir, reference = in_process
    served = metrics(tmp_path)
    assert improved(served[-1], start) and overlap(served[-1], reference), f"{start.describe()} -> {interval(served[-1])}"
    assert served[0]["loss"] == pytest.approx(metrics(reference_dir)[0]["loss"], rel=1e-3)  # the same episodes, the same teacher signal
    with TrajectoryStore(tmp_path / "store.db") as store:
        run_id = store.runs()[0].id
        mine = [e for batch in store.iter_episodes(EpisodeFilter(run_id=run_id)) for e in batch][:4]  # update 1
    theirs = episodes_of(reference_dir / "store.db", reference)[:4]
    for a, b in zip(mine, theirs, strict=True):
        assert a.token_ids.tolist() == b.token_ids.tolist()
        for x, y in zip(a.annotations.token_logprobs, b.annotations.token_logprobs, strict=True):
            assert np.array_equal(x.token_ids, y.token_ids)
            np.testing.assert_allclose(x.logprobs.astype(np.float32), y.logprobs.astype(np.float32), atol=1e-2)  # float16 storage
            np.testing.assert_allclose(x.tail_mass, y.tail_mass, atol=1e-4)


def test_opd_train_with_a_vllm_teacher(engine_models, vllm_teacher_url, start, in_process, tmp_path) -> None:
    teacher = TeacherEngineConfig(backend="http", urls=(vllm_teacher_url,), api="vllm")
    config = settings(engine_models, tmp_path, sampling=SAMPLING)
    result = train(TrainConfig(**config, inference=InferenceConfig(teacher=teacher)))
    assert result.updates == 3 and result.labelled_tokens > 0
    annotated = [e for e in episodes_of(tmp_path / "store.db", result) if e.annotations.token_logprobs]
    assert len(annotated) == 48 and all(a.k == MAX_K for e in annotated for a in e.annotations.token_logprobs)
    assert improved(result, start) and overlap(result, in_process[1]), f"{start.describe()} -> {result.final_eval.describe()}"


def test_opd_train_with_rollouts_on_vllm(engine_models, vllm_student, start, in_process, tmp_path) -> None:
    student = StudentEngineConfig(backend="vllm", url=vllm_student.url, weights_dir=str(vllm_student.weights_dir))
    config = settings(engine_models, tmp_path, sampling=SAMPLING)
    result = train(TrainConfig(**config, inference=InferenceConfig(student=student)))
    assert result.updates == 3
    rows = metrics(tmp_path)
    assert all(row["rollout/weight_push_s"] > 0 for row in rows if not row["skipped"])
    trained = CausalLMPolicy.from_pretrained(str(result.checkpoint / "model"))
    assert vllm_student.check_weights(trained.model) < 1e-3  # the engine ends on the trained weights
    assert improved(result, start) and overlap(result, in_process[1]), f"{start.describe()} -> {result.final_eval.describe()}"
    played = episodes_of(tmp_path / "store.db", result)
    assert len(played) == 48 and all(e.annotations.token_logprobs for e in played)
