"""A real store for the viewer's tests: two runs on the same tasks, a 1,000-step episode, one hostile episode, a real tokenizer.

Built with the project's record factories into a SQLite file that the tests
then only read (the read-only tests hash it before and after).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers
from trajectory_factories import make_episode

from opd.trajectories import Episode, Run, StepCritique, TrajectoryStore

# Text that would run, style or restructure the page if it were ever inserted as HTML or as a template.
HOSTILE = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=2">',
    "</textarea></pre><b>bold</b>",
    "{{ 7*7 }}{% raw %}",
    '"><svg onload=window.__pwned=3>',
)
WORDS = ["[UNK]", "the", "answer", "is", "add", "(", ")", "3", "4", "7", "<tool_call>", "</tool_call>", "\n", *HOSTILE]


@dataclasses.dataclass(frozen=True)
class ViewerStore:
    path: Path
    runs: tuple[Run, Run]
    shared_tasks: int  # tasks (task id, seed) both runs attempted
    long_episode: str  # 1,000 steps
    hostile_episode: str
    errored_episode: str
    episode_ids: tuple[str, ...]  # all, oldest first


def build_tokenizer(directory: Path) -> Path:
    """A word-level tokenizer whose vocabulary is WORDS, saved as tokenizer.json as `save_pretrained` would."""
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def in_vocabulary(episode: Episode, tokenizer: Path, *, top1_agrees: bool = True) -> Episode:
    """The episode with every token id (and every teacher top-k id) inside the tokenizer's vocabulary."""
    steps = tuple(dataclasses.replace(s, token_ids=s.token_ids % len(WORDS)) for s in episode.steps)
    by_index = {s.index: s for s in steps}
    annotations = []
    for a in episode.annotations.token_logprobs:
        ids = a.token_ids % len(WORDS)
        if top1_agrees:  # the teacher's favourite is the sampled token on every other position: a realistic mix of colours
            sampled = by_index[a.step_index].token_ids[by_index[a.step_index].policy_mask]
            ids[::2, 0] = sampled[::2]
        annotations.append(dataclasses.replace(a, token_ids=ids))
    return dataclasses.replace(
        episode,
        steps=steps,
        tokenizer=str(tokenizer),
        annotations=dataclasses.replace(episode.annotations, token_logprobs=tuple(annotations)),
    )


def hostile_episode(rng: np.random.Generator, run: Run, tokenizer: Path) -> Episode:
    text = " ".join(HOSTILE)
    base = in_vocabulary(make_episode(rng, run, steps=2), tokenizer)
    hostile_ids = np.array([WORDS.index(h) for h in HOSTILE], np.int32)
    steps = []
    for step in base.steps:
        ids = step.token_ids.copy()
        ids[step.policy_mask] = np.resize(hostile_ids, step.num_policy_tokens)
        steps.append(
            dataclasses.replace(
                step,
                token_ids=ids,
                action=f"{text} <tool_call>{{}}</tool_call>",
                observation=text,
                tool_calls=({"name": text, "arguments": {"html": text}},),
                tool_results=({"name": "add", "output": text, "status": "ok", "truncated": False},),
                error_kind=text if step.index == 1 else None,
            )
        )
    return dataclasses.replace(
        base,
        task_id=f"hostile {text}",
        steps=tuple(steps),
        initial_messages=({"role": "system", "content": text}, {"role": "user", "content": f"Task: {text}"}),
        failure_reason=text,
        termination="failed",
        success=False,
        reward=0.0,
        policy_model=text,
        annotations=dataclasses.replace(base.annotations, critiques=(StepCritique("critic", 0, 0.5, text, text),)),
    )


def build_viewer_store(root: Path) -> ViewerStore:
    tokenizer = build_tokenizer(root / "tokenizer")
    rng = np.random.default_rng(7)
    path = root / "store.db"
    with TrajectoryStore(path) as store:
        baseline = store.add_run(Run(name="baseline", config={"loss": "sft", "lr": 1e-3}, code_version="0.1.0"))
        distilled = store.add_run(
            Run(name=f"distilled {HOSTILE[0]}", config={"loss": "reverse_kl", "note": HOSTILE[1]}, code_version="0.1.0")
        )
        episodes = []
        for i in range(30):  # the same 30 tasks in both runs; the distilled run succeeds more often
            for run, success in ((baseline, i % 3 == 0), (distilled, i % 3 != 1)):
                episode = in_vocabulary(make_episode(rng, run, success=success, steps=1 + i % 4), tokenizer)
                episodes.append(dataclasses.replace(episode, task_id=f"calc-{i}", seed=i, suite="calculator" if i % 5 else "inventory"))
        errored = make_episode(rng, baseline, success=False, annotated=False)
        errored = dataclasses.replace(errored, steps=(dataclasses.replace(errored.steps[0], error_kind="parse_error"), *errored.steps[1:]))
        long = in_vocabulary(make_episode(rng, distilled, steps=1000, policy_tokens=6, k=4), tokenizer)
        hostile = hostile_episode(rng, distilled, tokenizer)
        episodes += [errored, long, hostile]
        for i in range(0, len(episodes), 16):
            store.write_episodes(episodes[i : i + 16])
    return ViewerStore(path, (baseline, distilled), 30, long.id, hostile.id, errored.id, tuple(e.id for e in episodes))


def ids_on(html: str) -> list[str]:
    """The episode ids an episodes-table page links to, in order."""
    return re.findall(r'href="/episodes/([0-9a-f]{32})"', html)


def page_link(html: str, rel: str) -> str | None:
    """The query string of the table's "newer" (rel="prev") or "older" (rel="next") link."""
    found = re.search(rf'href="/episodes\?([^"]+)" rel="{rel}"', html)
    return found.group(1).replace("&amp;", "&") if found else None


def every_listed_id(client) -> list[str]:
    """Every episode id the episodes table shows, following "older" links from the first page (a TestClient)."""
    seen, query = [], ""
    while True:
        page = client.get(f"/episodes?{query}")
        assert page.status_code == 200
        seen += ids_on(page.text)
        assert len(seen) == len(set(seen)), "the table showed an episode twice"  # and so would never end
        if (query := page_link(page.text, "next")) is None:
            return seen
