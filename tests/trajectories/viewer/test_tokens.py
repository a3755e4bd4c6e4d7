"""Token texts decoded in context, and each token's divergence and colour bin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tiny_tokenizer import build_tiny_tokenizer

from opd.trajectories import Step, TokenLogprobs
from opd.trajectories.viewer.tokens import DIVERGENCE_BINS, load_decoder, token_views


def step_of(ids: list[int], policy_from: int, student: float = -0.5) -> Step:
    mask = np.arange(len(ids)) >= policy_from
    logprobs = np.where(mask, student, np.nan).astype(np.float32)
    return Step(index=0, action="", observation="", token_ids=np.array(ids, np.int32), policy_mask=mask, logprobs=logprobs)


def test_token_texts_in_context_add_up_to_the_text(tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer(tmp_path / "tok")  # byte-level BPE: spaces live inside tokens
    decoder = load_decoder(str(tmp_path / "tok"))
    text = "Compute (3 + 4) * 5 using the calculator tools."
    ids = tokenizer(text)["input_ids"]
    views = token_views(step_of(ids, policy_from=2), None, decoder)
    assert "".join(v.text for v in views) == tokenizer.decode(ids[2:])
    assert any(v.text.startswith(" ") for v in views)  # a leading space kept, as a token alone would lose it at the start
    assert all(v.bin is None and v.teacher is None and v.student == -0.5 for v in views)
    assert decoder.texts([], [10**6]) == ["#1000000"]  # outside the vocabulary


def test_without_a_tokenizer_file_tokens_show_as_ids(tmp_path: Path) -> None:
    assert load_decoder("") is None and load_decoder(str(tmp_path / "nowhere")) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("{not json")
    assert load_decoder(str(tmp_path / "broken")) is None
    assert [v.text for v in token_views(step_of([5, 6, 7], policy_from=1), None, None)] == ["#6", "#7"]


def test_divergence_and_bins_against_the_teacher() -> None:
    step = step_of([1, 2, 3, 4], policy_from=1, student=-0.5)  # policy tokens 2, 3, 4
    annotation = TokenLogprobs(
        teacher="t",
        step_index=0,
        token_ids=np.array([[2, 9], [9, 3], [8, 9]], np.int32),  # sampled token first, second, outside the top 2
        logprobs=np.array([[-0.5, -1.0], [-0.1, -3.0], [-0.1, -0.2]], np.float16),
        tail_mass=np.array([0.1, 0.1, np.exp(-6)], np.float32),
    )
    views = token_views(step, annotation, None)
    assert [v.divergence for v in views] == [0.0, 2.5, 5.5]
    assert [v.bin for v in views] == [int(np.digitize(d, DIVERGENCE_BINS)) for d in (0.0, 2.5, 5.5)] == [1, 4, 5]
    assert [v.outside_topk for v in views] == [False, False, True]
    assert views[1].alternatives == (("#9", -0.1), ("#3", -3.0))
