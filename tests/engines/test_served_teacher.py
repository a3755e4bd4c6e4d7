"""Served teachers over real HTTP on loopback: opd's /score, vLLM's completions, and the SGLang adapter; replicas and failures."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi import FastAPI
from servers import MAX_K, ThreadedServer
from transformers import AutoModelForCausalLM

from opd.agents.http_scoring import HTTPScorer
from opd.agents.preflight import preflight
from opd.agents.score_server import create_score_app
from opd.agents.scoring import LocalScorer, ScoreRequest, ScoreResult
from opd.errors import ConfigError, InferenceServerError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(engine_models) -> LocalScorer:
    return LocalScorer(AutoModelForCausalLM.from_pretrained(engine_models[1]))


@pytest.fixture(scope="module")
def requests_(student_policy) -> list[ScoreRequest]:
    """Sequences of different lengths, one with candidate ids per position."""
    chat = student_policy.chat
    texts = ["Compute 3 + 4", "What is 12 * 7 ? Use the tools", "add"]
    ids = [[chat.end_of_turn_id, *chat.encode(t)] for t in texts]
    candidates = tuple((5, 17, 40) if i % 2 else (9,) for i in range(len(ids[1]) - 2))
    return [ScoreRequest(tuple(ids[0]), 1, 8), ScoreRequest(tuple(ids[1]), 2, 8, candidates), ScoreRequest(tuple(ids[2]), 1, 8)]


def assert_same(got: ScoreResult, want: ScoreResult, atol: float) -> None:
    np.testing.assert_allclose(got.token_logprobs, want.token_logprobs, atol=atol)
    assert np.array_equal(got.topk_ids, want.topk_ids)
    np.testing.assert_allclose(got.topk_logprobs, want.topk_logprobs, atol=atol)
    np.testing.assert_allclose(got.tail_mass, want.tail_mass, atol=atol)


def test_opd_serve_teacher_answers_the_whole_contract(opd_teacher_url, local, requests_) -> None:
    scorer = HTTPScorer([opd_teacher_url], api="opd", batch_size=2)
    try:
        for got, want in zip(scorer.score(requests_), local.score(requests_), strict=True):
            assert_same(got, want, atol=1e-5)
            if want.candidate_logprobs is not None:
                assert got.candidate_logprobs is not None
                np.testing.assert_allclose(got.candidate_logprobs, want.candidate_logprobs, atol=1e-5)
    finally:
        scorer.close()


def test_vllm_prompt_logprobs_match_the_teacher(vllm_teacher_url, engine_models, local, requests_) -> None:
    plain = [ScoreRequest(r.token_ids, r.start, MAX_K) for r in requests_]
    scorer = HTTPScorer([vllm_teacher_url], api="vllm", model=str(engine_models[1]))
    try:
        for got, want in zip(scorer.score(plain), local.score(plain), strict=True):
            assert_same(got, want, atol=1e-4)  # vLLM's CPU kernels, not transformers': float32 rounding differs
        with pytest.raises(ConfigError, match="vLLM's prompt log-probs cover only the top k"):
            scorer.score(requests_[1:2])
        with pytest.raises(InferenceServerError, match="max-logprobs"):  # the server refuses k above its --max-logprobs
            scorer.score([ScoreRequest(plain[0].token_ids, 1, MAX_K + 8)])
    finally:
        scorer.close()


def sglang_standin(local: LocalScorer) -> FastAPI:
    """A stand-in for SGLang's native /generate (SGLang does not run on this CPU-only CI), answering in its documented shape:
    per request, meta_info.input_token_logprobs / input_top_logprobs / input_token_ids_logprobs as [logprob, token id, text]
    entries for every input token from logprob_start_len on. The numbers come from the real teacher model."""
    app = FastAPI()

    @app.post("/generate")
    def generate(body: dict) -> list[dict]:
        out = []
        for i, ids in enumerate(body["input_ids"]):
            start, k = body["logprob_start_len"][i], body["top_logprobs_num"][i]
            wanted = (body.get("token_ids_logprob") or [[]] * len(body["input_ids"]))[i]
            positions = len(ids) - start
            result = local.score([ScoreRequest(tuple(ids), start, k, (tuple(wanted),) * positions if wanted else None)])[0]
            meta = {
                "input_token_logprobs": [[float(v), t, None] for v, t in zip(result.token_logprobs, ids[start:], strict=True)],
                "input_top_logprobs": [
                    [[float(v), int(t), None] for v, t in zip(vs, ts, strict=True)]
                    for vs, ts in zip(result.topk_logprobs, result.topk_ids, strict=True)
                ],
            }
            if wanted:
                meta["input_token_ids_logprobs"] = [
                    [[float(v), t, None] for v, t in zip(row, wanted, strict=True)] for row in result.candidate_logprobs
                ]
            out.append({"text": "", "meta_info": meta})
        return out

    return app


def test_the_sglang_adapter_reads_sglangs_documented_shape(local, requests_) -> None:
    with ThreadedServer(sglang_standin(local)) as server:
        scorer = HTTPScorer([server.url], api="sglang")
        try:
            # The stand-in scores each request alone, the reference all in one padded batch: float32 rounds them differently.
            for got, want in zip(scorer.score(requests_), local.score(requests_), strict=True):
                assert_same(got, want, atol=1e-5)
                if want.candidate_logprobs is not None:  # each position's candidates, picked from the union SGLang scored
                    np.testing.assert_allclose(got.candidate_logprobs, want.candidate_logprobs, atol=1e-5)
        finally:
            scorer.close()


class CountingScorer:
    def __init__(self, inner: LocalScorer) -> None:
        self.inner, self.calls = inner, 0

    def score(self, requests):
        self.calls += 1
        return self.inner.score(requests)


def test_replicas_share_the_batches_and_must_agree(opd_teacher_url, local, engine_models, requests_) -> None:
    counting = CountingScorer(local)
    with ThreadedServer(create_score_app(counting, name="replica", vocab_size=local.model.config.vocab_size, max_k=64)) as replica:
        scorer = HTTPScorer([opd_teacher_url, replica.url], api="opd", batch_size=1)
        try:
            for got, want in zip(scorer.score(requests_ * 2), local.score(requests_ * 2), strict=True):
                assert_same(got, want, atol=1e-5)
            assert counting.calls == 3  # six batches of one, round-robin over two replicas
            assert scorer.check_replicas(requests_[0]) < 1e-5
        finally:
            scorer.close()
    other = LocalScorer(AutoModelForCausalLM.from_pretrained(engine_models[0]))  # the student's weights: a wrong replica
    with ThreadedServer(create_score_app(other, name="other", vocab_size=local.model.config.vocab_size, max_k=64)) as wrong:
        scorer = HTTPScorer([opd_teacher_url, wrong.url], api="opd")
        with pytest.raises(InferenceServerError, match="replicas disagree"):
            scorer.check_replicas(requests_[0])
        scorer.close()


def test_transport_errors_fail_over_and_http_errors_do_not_retry(opd_teacher_url, local, requests_) -> None:
    from opd.agents.vllm_policy import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    scorer = HTTPScorer([dead, opd_teacher_url], api="opd", retries=1, timeout_s=10)
    try:
        for got, want in zip(scorer.score(requests_ * 2), local.score(requests_ * 2), strict=True):
            assert_same(got, want, atol=1e-5)
        with pytest.raises(InferenceServerError, match=r"answered 422.*--max-k"):
            scorer.score([ScoreRequest(requests_[0].token_ids, 1, 65)])
    finally:
        scorer.close()
    only_dead = HTTPScorer([dead], api="opd", retries=2, timeout_s=5)
    with pytest.raises(InferenceServerError, match="after 3 attempts"):
        only_dead.score(requests_[:1])
    only_dead.close()


def test_the_preflight_estimates_the_bias_through_the_served_teacher(opd_teacher_url, local, student_policy, tiny_tokenizer) -> None:
    texts = ["Compute 3 + 4 with the tools", "What is 12 * 7 ?"]
    teacher_tokenizer = student_policy.tokenizer
    scorer = HTTPScorer([opd_teacher_url], api="opd")
    try:
        served = preflight(tiny_tokenizer, teacher_tokenizer, scorer=scorer, texts=texts)
    finally:
        scorer.close()
    in_process = preflight(tiny_tokenizer, teacher_tokenizer, teacher_model=local.model, texts=texts)
    assert not served.ok and served.bias_nats_per_token is not None
    assert served.bias_nats_per_token == pytest.approx(in_process.bias_nats_per_token, abs=1e-4)
