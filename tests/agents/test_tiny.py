"""The tiny word-level tokenizer knows every tool of the suite, also those its expert never calls."""

from __future__ import annotations

from pathlib import Path

from opd.agents.tiny import build_word_tokenizer, expert_texts
from opd.envs import ToolEnv, play_expert


def test_every_tool_name_is_in_the_vocabulary(tmp_path: Path) -> None:
    env = ToolEnv("calculator", difficulty="easy")
    called = {a.split('"name": "')[1].split('"')[0] for s in range(3) for a in play_expert(env, s).actions if '"name"' in a}
    assert called < {t.name for t in env.suite.tools}  # three easy tasks leave some tools uncalled
    tokenizer = build_word_tokenizer(expert_texts(env, 3), tmp_path)
    for tool in env.suite.tools:
        for word in (tool.name, *tool.parameter_names):
            assert tokenizer.unk_token_id not in tokenizer(word, add_special_tokens=False).input_ids, word
