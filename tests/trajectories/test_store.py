from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from trajectory_factories import make_episode, make_topk

from opd.errors import ConfigError
from opd.trajectories import (
    Annotations,
    EpisodeFilter,
    EpisodeScore,
    Run,
    StepCritique,
    StepRoute,
    TrajectoryStore,
    episode_from_json,
    episode_to_json,
)


def test_episode_round_trips_bit_for_bit(store: TrajectoryStore, episode) -> None:
    store.write_episode(episode)
    loaded = store.get_episode(episode.id)
    assert loaded == episode
    step = loaded.steps[1]
    assert step.token_ids.dtype == np.int32 and step.logprobs.dtype == np.float32 and step.policy_mask.dtype == bool
    assert np.isnan(step.logprobs[~step.policy_mask]).all()
    topk = loaded.annotations.token_logprobs[0]
    assert topk.logprobs.dtype == np.float16 and topk.logprobs.tobytes() == episode.annotations.token_logprobs[0].logprobs.tobytes()


def test_a_routed_branch_round_trips_through_the_store_and_jsonl(store: TrajectoryStore, episode, run) -> None:
    routes = (StepRoute("routed", 0, "large", "tool order", 0.7, 120, 2.4e6), StepRoute("routed", 1, "teacher", "default", None, 30, 1e4))
    branch = dataclasses.replace(
        episode, parent_id="f" * 32, branch_step=1, annotations=dataclasses.replace(episode.annotations, routes=routes)
    )
    store.write_episode(branch)
    loaded = store.get_episode(branch.id)
    assert loaded == branch and loaded.annotations.routes == routes
    assert store.get_steps(branch.id, 1, 2)[1].routes == routes[1:]
    assert episode_from_json(episode_to_json(loaded, run)) == (loaded, run)


def test_episode_helpers_concatenate_steps(episode) -> None:
    assert episode.num_tokens == sum(len(s.token_ids) for s in episode.steps) == len(episode.token_ids)
    assert episode.policy_mask.sum() == sum(s.num_policy_tokens for s in episode.steps)


def test_id_prefix_lookup(store: TrajectoryStore, episode) -> None:
    store.write_episode(episode)
    assert store.get_episode(episode.id[:6]).id == episode.id
    with pytest.raises(KeyError, match="No episode"):
        store.get_episode("zzzz")


def test_a_failing_write_leaves_nothing(store: TrajectoryStore, rng, run) -> None:
    good = make_episode(rng, run)
    store.write_episode(good)
    duplicate_step = dataclasses.replace(make_episode(rng, run, annotated=False), steps=(good.steps[0], good.steps[0]))
    with pytest.raises(Exception, match="(?i)unique"):
        store.write_episode(duplicate_step)
    assert store.count_episodes() == 1
    assert not store.has_episode(duplicate_step.id)


def test_annotations_from_several_teachers_sit_side_by_side(store: TrajectoryStore, rng, run) -> None:
    episode = make_episode(rng, run, annotated=False)
    store.write_episode(episode)
    first = Annotations(token_logprobs=tuple(make_topk(rng, s, teacher="big") for s in episode.steps))
    second = Annotations(
        token_logprobs=(make_topk(rng, episode.steps[0], teacher="bigger", k=4),),
        critiques=(StepCritique("api-judge", 2, 0.9, "good"),),
        episode_scores=(EpisodeScore("api-judge", 0.5),),
    )
    store.add_annotations(episode.id, first)
    store.add_annotations(episode.id, second)
    loaded = store.get_episode(episode.id).annotations
    assert [(a.step_index, a.teacher) for a in loaded.token_logprobs] == [(0, "big"), (0, "bigger"), (1, "big"), (2, "big")]
    assert loaded.teachers == ["api-judge", "big", "bigger"]
    with pytest.raises(Exception, match="(?i)unique"):
        store.add_annotations(episode.id, Annotations(critiques=(StepCritique("api-judge", 2, 0.1, "again"),)))
    assert len(store.get_episode(episode.id).annotations.critiques) == 1


def test_annotations_must_match_the_step(store: TrajectoryStore, rng, run) -> None:
    episode = make_episode(rng, run, annotated=False)
    store.write_episode(episode)
    wrong_length = make_topk(rng, make_episode(rng, run, policy_tokens=3).steps[0])
    with pytest.raises(ConfigError, match="policy tokens"):
        store.add_annotations(episode.id, Annotations(token_logprobs=(wrong_length,)))
    with pytest.raises(ConfigError, match="names step 9"):
        store.add_annotations(episode.id, Annotations(critiques=(StepCritique("x", 9, 1.0),)))
    with pytest.raises(KeyError):
        store.add_annotations("missing", Annotations())


def test_filters(store: TrajectoryStore, rng, run) -> None:
    other_run = store.add_run(Run(name="other"))
    store.write_episodes(
        [
            make_episode(rng, run, suite="calculator", success=True),
            make_episode(rng, run, suite="calculator", success=False, annotated=False),
            make_episode(rng, run, suite="inventory", success=True, annotated=False),
            make_episode(rng, other_run, suite="inventory", success=False),
        ]
    )
    count = store.count_episodes
    assert count() == 4
    assert count(EpisodeFilter(run_id=run.id)) == 3
    assert count(EpisodeFilter(suite="inventory")) == 2
    assert count(EpisodeFilter(success=True)) == 2
    assert count(EpisodeFilter(suite="calculator", success=False)) == 1
    assert count(EpisodeFilter(has_annotation="token_logprobs")) == 2
    assert count(EpisodeFilter(has_annotation="critiques", teacher="critic")) == 2
    assert count(EpisodeFilter(has_annotation="critiques", teacher="nobody")) == 0
    with pytest.raises(ConfigError, match="has_annotation must be one of"):
        EpisodeFilter(has_annotation="logits")


def test_iteration_in_batches_covers_everything_once(store: TrajectoryStore, rng, run) -> None:
    written = [make_episode(rng, run, success=bool(i % 2), annotated=i % 3 == 0) for i in range(23)]
    store.write_episodes(written)
    batches = list(store.iter_episodes(batch_size=5))
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert [e.id for b in batches for e in b] == [e.id for e in written]
    successes = [e for b in store.iter_episodes(EpisodeFilter(success=True), batch_size=4) for e in b]
    assert len(successes) == 11 and all(e.success for e in successes)
    step_batches = list(store.iter_steps(batch_size=10))
    assert sum(len(b) for b in step_batches) == 23 * 3
    assert all(len(b) <= 10 for b in step_batches)


def test_list_episodes_newest_first_with_paging(store: TrajectoryStore, rng, run) -> None:
    written = [make_episode(rng, run) for _ in range(7)]
    for e in written:
        store.write_episode(e)
    page = store.list_episodes(limit=3, offset=2)
    assert [s.id for s in page] == [e.id for e in reversed(written)][2:5]
    assert page[0].num_steps == 3 and page[0].created_at.tzinfo is not None


def test_runs(store: TrajectoryStore, run) -> None:
    store.add_run(run)  # idempotent
    assert store.get_run(run.id) == run
    assert [r.id for r in store.runs()] == [run.id]


def test_bad_token_ids_are_refused(store: TrajectoryStore, rng, run) -> None:
    episode = make_episode(rng, run)
    step = episode.steps[0]
    huge = dataclasses.replace(step, token_ids=step.token_ids.astype(np.int64) + 2**40)
    with pytest.raises(ValueError, match="fit"):
        store.write_episode(dataclasses.replace(episode, steps=(huge,)))
    with pytest.raises(ConfigError, match="one entry per token"):
        dataclasses.replace(step, policy_mask=step.policy_mask[:-1])
