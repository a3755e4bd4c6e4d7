"""The black-box teacher against real HTTP servers on loopback: our chat server (top_logprobs, faults) and `transformers serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from chat_server import chat_app, constant_judge, free_port, serve
from trajectory_factories import make_episode

from opd.agents.critic import BlackBoxTeacher, CriticConfig, critique_messages, parse_judgement, score_distribution
from opd.errors import ConfigError
from opd.trajectories import Run, TrajectoryStore

CONFIG = CriticConfig(model="openai/judge")


def episodes(n: int = 2, steps: int = 3):
    rng = np.random.default_rng(0)
    return [make_episode(rng, Run(), steps=steps, annotated=False) for _ in range(n)]


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ('{"score": 7, "rationale": "ok"}', 7.0),
        ('Sure! ```json\n{"score": "3", "rationale": "meh", "corrected_action": null}\n```', 3.0),
        ('{"score": 10}', 10.0),
    ],
)
def test_judgements_parse_leniently(text: str, score: float) -> None:
    judgement = parse_judgement(text, CONFIG)
    assert not isinstance(judgement, str) and judgement.score == score and judgement.corrected_action is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("I think it is fine", "no JSON object"),
        ('{"score": 7,', "no JSON object"),
        ('{"score": 7, "rationale": }', "does not parse"),
        ('{"rationale": "x"}', 'no "score"'),
        ('{"score": 11}', "must lie in [0, 10]"),
        ('{"score": "high"}', "must be a number"),
        ('{"score": NaN}', "must lie in"),
    ],
)
def test_bad_judgements_say_what_is_wrong(text: str, error: str) -> None:
    result = parse_judgement(text, CONFIG)
    assert isinstance(result, str) and error in result


def test_the_request_shows_the_task_the_history_and_only_the_graded_step() -> None:
    episode = episodes(1)[0]
    system, user = critique_messages(episode, 1, CONFIG)
    assert '"score"' in system["content"] and "corrected_action" in system["content"]
    content = user["content"]
    assert episode.initial_messages[-1]["content"] in content
    assert episode.steps[0].action in content and episode.steps[0].observation in content
    assert content.rindex(episode.steps[1].action) > content.index("STEP TO GRADE")
    assert episode.steps[2].action not in content.split("STEP TO GRADE")[0]


def test_score_distribution_reads_the_score_tokens_alternatives() -> None:
    positions = [{"token": t, "logprob": 0.0, "top_logprobs": []} for t in ['{"', "score", '":', " "]]
    positions.append(
        {"token": "6", "logprob": np.log(0.5), "top_logprobs": [{"token": "7", "logprob": np.log(0.25)}, {"token": "x", "logprob": -1}]}
    )
    assert score_distribution(positions, CONFIG) == pytest.approx({6: 2 / 3, 7: 1 / 3})
    assert score_distribution(positions[:4], CONFIG) is None


def test_top_logprobs_set_the_score_and_its_uncertainty() -> None:
    app, log = chat_app(lambda messages: ({6: 0.5, 8: 0.5}, "split"))
    with serve(app) as base:
        teacher = BlackBoxTeacher(CriticConfig(model="openai/judge", api_base=base, top_logprobs=5))
        critiques = [c for a in teacher.annotate(episodes()) for c in a.critiques]
    assert len(critiques) == 6 and log.requests == 6
    assert all(c.score == pytest.approx(7.0) and c.uncertainty == pytest.approx(np.log(2) / np.log(11)) for c in critiques)
    assert log.bodies[0]["logprobs"] is True and log.bodies[0]["top_logprobs"] == 5
    assert all(c.usage["calls"] == 1 and c.usage["prompt_tokens"] > 0 and c.usage["cost_usd"] is None for c in critiques)


def test_disagreement_among_samples_is_the_uncertainty() -> None:
    scores = iter([2, 8] * 10)
    app, log = chat_app(lambda messages: ({next(scores): 1.0}, "varies"))
    with serve(app) as base:
        teacher = BlackBoxTeacher(CriticConfig(model="openai/judge", api_base=base, samples=2, temperature=1.0))
        (critique,) = teacher.annotate(episodes(1, steps=1))[0].critiques
    assert critique.score == 5.0 and critique.uncertainty == pytest.approx(3.0 / 5.0) and log.requests == 2
    assert {b["seed"] for b in log.bodies} == {0, 1}


def test_an_unparseable_reply_is_asked_again_with_the_error_then_left_unannotated() -> None:
    app, log = chat_app(constant_judge(7), faults={"unparseable": 1.0})
    with serve(app) as base:
        teacher = BlackBoxTeacher(CriticConfig(model="openai/judge", api_base=base, parse_retries=2))
        (critique,) = teacher.annotate(episodes(1, steps=1))[0].critiques
    assert critique.score is None and "unparseable judgement: the reply contains no JSON object" in critique.error
    assert log.requests == 3 and critique.usage["calls"] == 3
    retry = log.bodies[1]["messages"]
    assert retry[-2]["role"] == "assistant" and "could not be used: the reply contains no JSON object" in retry[-1]["content"]


def test_a_rerun_is_served_from_the_cache_and_no_key_is_ever_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-" + "9" * 24
    monkeypatch.setenv("OPD_TEST_CRITIC_KEY", secret)
    app, log = chat_app(constant_judge(4))
    batch = episodes()
    with serve(app) as base, TrajectoryStore(tmp_path / "store.db") as store:
        config = CriticConfig(model="openai/judge", api_base=base, api_key_env="OPD_TEST_CRITIC_KEY", cache=str(tmp_path / "cache.db"))
        first = BlackBoxTeacher(config).annotate(batch)
        assert log.requests == 6
        second_teacher = BlackBoxTeacher(config)
        second = second_teacher.annotate(batch)
        second_teacher.close()
        assert log.requests == 6, "the rerun must not reach the server"
        assert [c.score for a in first for c in a.critiques] == [c.score for a in second for c in a.critiques] == [4.0] * 6
        assert all(c.usage["cached"] == 1 and c.usage["calls"] == 0 for a in second for c in a.critiques)
        store.add_run(Run(id=batch[0].run_id))
        store.add_run(Run(id=batch[1].run_id))
        for episode, annotations in zip(batch, first, strict=True):
            store.write_episode(episode)
            store.add_annotations(episode.id, annotations)
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), f"the key leaked into {path.name}"


def test_missing_key_variable_and_refused_requests_stop_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPD_TEST_NO_SUCH_KEY", raising=False)
    teacher = BlackBoxTeacher(CriticConfig(model="openai/judge", api_base="http://127.0.0.1:9/v1", api_key_env="OPD_TEST_NO_SUCH_KEY"))
    with pytest.raises(ConfigError, match="OPD_TEST_NO_SUCH_KEY is not set"):
        teacher.annotate(episodes(1, steps=1))
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    refusing = FastAPI()
    refusing.post("/v1/chat/completions")(lambda: JSONResponse({"error": {"message": "bad key"}}, status_code=401))
    with serve(refusing) as base, pytest.raises(ConfigError, match="refused the request"):
        BlackBoxTeacher(CriticConfig(model="openai/judge", api_base=base)).annotate(episodes(1, steps=1))


def test_faults_are_retried_and_what_still_fails_is_marked_unannotated() -> None:
    faults = {"error": 0.15, "rate_limit": 0.1, "timeout": 0.05, "garbage": 0.1, "unparseable": 0.1}
    app, log = chat_app(constant_judge(6), faults=faults, seed=3, slow_s=2.0)
    with serve(app) as base:
        config = CriticConfig(model="openai/judge", api_base=base, timeout_s=0.5, max_retries=1, backoff_s=0.01, parse_retries=0)
        critiques = [c for a in BlackBoxTeacher(config).annotate(episodes(8, steps=3)) for c in a.critiques]
    assert len(critiques) == 24 and all(v > 0 for v in log.faults.values()), log.faults
    graded = [c for c in critiques if c.score is not None]
    unannotated = [c for c in critiques if c.score is None]
    assert graded and unannotated and all(c.score == 6.0 for c in graded)
    assert all(c.error.startswith(("request failed", "unparseable")) for c in unannotated)
    assert log.requests > 24  # retries happened


@pytest.fixture(scope="module")
def judge_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_judge_model(tmp_path_factory.mktemp("judge"))


def train_judge_model(directory: Path) -> Path:
    """A tiny byte-level model trained locally to answer every critique request with one fixed JSON judgement."""
    import torch
    from tiny_tokenizer import build_tiny_tokenizer

    from opd.agents.tiny import TINY_CHAT_TEMPLATE, build_tiny_model

    target = '{"score": 7, "rationale": "The step is fine."}'
    tokenizer = build_tiny_tokenizer(directory, chat_template=TINY_CHAT_TEMPLATE)
    model = build_tiny_model(tokenizer, directory, layers=1, hidden=32, heads=2)
    asked = [critique_messages(e, s.index, CONFIG) for e in episodes(2, steps=2) for s in e.steps]  # exactly what it will be asked
    prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in asked]
    rows = [
        (tokenizer(p, add_special_tokens=False).input_ids, tokenizer(target + "<|im_end|>", add_special_tokens=False).input_ids)
        for p in prompts
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    torch.manual_seed(0)
    for _ in range(150):
        loss = 0.0
        for prompt, answer in rows:
            logits = model(input_ids=torch.tensor([prompt + answer])).logits[0, len(prompt) - 1 : -1]
            loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor(answer))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(directory)
    return directory


@pytest.mark.slow
def test_critiques_from_a_model_served_by_transformers_serve(judge_model: Path) -> None:
    port = free_port()
    command = [str(Path(sys.executable).parent / "transformers"), "serve", str(judge_model), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "transformers serve did not come up"
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        config = CriticConfig(model=f"openai/{judge_model}", api_base=f"http://127.0.0.1:{port}/v1", max_tokens=40, concurrency=2)
        critiques = [c for a in BlackBoxTeacher(config).annotate(episodes(2, steps=2)) for c in a.critiques]
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert len(critiques) == 4
    assert all(c.score == 7.0 and c.critique == "The step is fine." and c.error is None for c in critiques), critiques
    assert all(c.usage["completion_tokens"] > 0 and c.uncertainty is None for c in critiques)  # it ignores logprobs


def test_training_without_a_critic_never_imports_litellm() -> None:
    """``TrainConfig`` names ``CriticConfig``; litellm (seconds and ~170 MiB) loads only when a critic calls out."""
    probe = "import sys, opd.distill.train; from opd.agents.critic import retryable_errors; before = 'litellm' in sys.modules; "
    probe += "retryable_errors(); print(before, 'litellm' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]
