from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from trajectory_factories import make_episode

from opd.distill.batch import make_batch
from opd.distill.losses import LossConfig, LossTotals, compute_loss, loss_totals
from opd.distill.token_divergence import token_divergence
from opd.errors import ConfigError
from opd.trajectories import Run, StepCritique


def episodes(n: int = 3, vocab: int = 50, k: int = 8, seed: int = 0):
    """Synthetic annotated episodes over a small vocabulary, with varied step counts."""
    rng = np.random.default_rng(seed)
    made = []
    for i in range(n):
        e = make_episode(rng, Run(id="r"), steps=1 + i, policy_tokens=3 + i, k=k)
        steps = tuple(dataclasses.replace(s, token_ids=(s.token_ids % vocab).astype(np.int32)) for s in e.steps)
        anns = tuple(dataclasses.replace(a, token_ids=distinct_ids(rng, len(a.token_ids), vocab, k)) for a in e.annotations.token_logprobs)
        annotations = dataclasses.replace(e.annotations, token_logprobs=anns)
        made.append(dataclasses.replace(e, steps=steps, reward=float(i % 2), annotations=annotations))
    return made


def distinct_ids(rng: np.random.Generator, rows: int, vocab: int, k: int) -> np.ndarray:
    """(rows, k) token ids, distinct within a row, as a teacher's top k are."""
    return rng.permuted(np.tile(np.arange(vocab), (rows, 1)), axis=1)[:, :k].astype(np.int32)


def logits_for(batch, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(*batch.input_ids_BT.shape, vocab, requires_grad=True)


def test_batch_alignment_predicts_the_next_token() -> None:
    eps = episodes()
    batch = make_batch(eps, teacher="teacher")
    for b, episode in enumerate(eps):
        n = episode.num_tokens
        assert batch.targets_BT[b, : n - 1].tolist() == episode.token_ids[1:].tolist()
        assert batch.policy_BT[b, : n - 1].tolist() == episode.policy_mask[1:].tolist()
        assert not batch.policy_BT[b, n - 1 :].any()
    assert batch.policy_tokens == sum(int(e.policy_mask[1:].sum()) for e in eps)
    first = eps[0].annotations.token_logprobs[0]
    position = int(np.flatnonzero(eps[0].steps[0].policy_mask)[0]) - 1
    assert batch.teacher.token_ids[0, position].tolist() == first.token_ids[0].tolist()


def test_token_loss_is_the_masked_token_mean() -> None:
    batch = make_batch(episodes(), teacher="teacher")
    logits = logits_for(batch)
    loss = compute_loss(logits, batch, LossConfig(kind="token", divergence="forward_kl")).loss
    values = token_divergence(logits, batch.teacher, "forward_kl", mask_BT=batch.policy_BT)
    assert loss.item() == pytest.approx((values[batch.policy_BT].sum() / batch.policy_BT.sum()).item(), rel=1e-6)
    loss.backward()
    assert logits.grad is not None and logits.grad[~batch.policy_BT].abs().sum() == 0  # only policy targets learn


def test_step_loss_weighs_each_step_equally() -> None:
    batch = make_batch(episodes(), teacher="teacher")
    logits = logits_for(batch)
    config = LossConfig(kind="step")  # the default divergence, JSD(0.5)
    loss = compute_loss(logits, batch, config).loss
    values = token_divergence(logits, batch.teacher, config.divergence, mask_BT=batch.policy_BT).detach()
    means = []
    for b in range(batch.policy_BT.shape[0]):
        for s in batch.step_BT[b].unique().tolist():
            chosen = batch.policy_BT[b] & (batch.step_BT[b] == s)
            if s >= 0 and chosen.any():
                means.append(values[b][chosen].mean())
    assert loss.item() == pytest.approx(torch.stack(means).mean().item(), rel=1e-6)


def test_episode_loss_pushes_up_better_than_average_episodes() -> None:
    batch = make_batch(episodes(n=4), teacher=None)
    logits = logits_for(batch)
    compute_loss(logits, batch, LossConfig(kind="episode", episode_return="outcome")).loss.backward()
    # Gradient descent raises log q of the sampled tokens in rewarded episodes (reward 1) and lowers it elsewhere.
    targets = batch.targets_BT.unsqueeze(-1)
    along = -logits.grad.gather(-1, targets).squeeze(-1)  # the step direction's effect on the sampled logit
    for b, reward in enumerate(batch.rewards_B.tolist()):
        sampled = along[b][batch.policy_BT[b]]
        assert (sampled > 0).all() if reward > batch.rewards_B.mean() else (sampled < 0).all()


def test_episode_loss_with_the_reverse_kl_return_needs_a_teacher() -> None:
    batch = make_batch(episodes(), teacher=None)
    with pytest.raises(ConfigError, match="needs teacher annotations"):
        compute_loss(logits_for(batch), batch, LossConfig(kind="episode"))


def test_hybrid_is_the_weighted_sum() -> None:
    batch = make_batch(episodes(), teacher="teacher")
    logits = logits_for(batch)
    token = compute_loss(logits, batch, LossConfig(kind="token")).loss
    sft = compute_loss(logits, batch, LossConfig(kind="sft")).loss
    hybrid = compute_loss(logits, batch, LossConfig(kind="hybrid", hybrid_weights={"token": 1.0, "sft": 0.25}))
    assert hybrid.loss.item() == pytest.approx(token.item() + 0.25 * sft.item(), rel=1e-6)
    assert set(hybrid.metrics) == {"loss", "loss/token", "loss/sft"}


def test_sft_is_cross_entropy_on_policy_tokens() -> None:
    batch = make_batch(episodes(), teacher=None)
    logits = logits_for(batch)
    loss = compute_loss(logits, batch, LossConfig(kind="sft")).loss
    nll = torch.nn.functional.cross_entropy(logits[batch.policy_BT], batch.targets_BT[batch.policy_BT])
    assert loss.item() == pytest.approx(nll.item(), rel=1e-6)


def test_bad_loss_configs() -> None:
    with pytest.raises(ConfigError, match="loss kind"):
        LossConfig(kind="tokens")
    with pytest.raises(Exception, match="Did you mean 'reverse_kl'"):
        LossConfig(divergence="reverse_kll")
    with pytest.raises(ConfigError, match="hybrid_weights"):
        LossConfig(kind="hybrid", hybrid_weights={"tokens": 1.0})
    assert LossConfig(kind="sft").needs_teacher is False and LossConfig().needs_teacher is True


def test_a_batch_moves_to_the_models_device_whole() -> None:
    batch = make_batch(episodes(), teacher="teacher")
    moved = batch.to("meta")  # a device every machine has; CUDA is not on CI's machines
    tensors = [moved.input_ids_BT, moved.policy_BT, moved.sampled_logprobs_BT, moved.teacher.token_ids, moved.teacher.tail_mass]
    assert all(t.device.type == "meta" for t in tensors) and moved.policy_BT.shape == batch.policy_BT.shape


def with_critiques(eps, scores_per_episode, uncertainty=None):
    """``eps`` with critic scores (None: unannotated) per step, on a 0..10 scale."""
    out = []
    for e, scores in zip(eps, scores_per_episode, strict=True):
        critiques = tuple(
            StepCritique("critic", s.index, score, error=None if score is not None else "timeout", uncertainty=uncertainty)
            for s, score in zip(e.steps, scores, strict=True)
        )
        out.append(dataclasses.replace(e, annotations=dataclasses.replace(e.annotations, critiques=critiques)))
    return out


def naive_unit_pg(logits, batch, units, returns, weights=None) -> torch.Tensor:
    """Reference: -sum_u w_u (R_u - mean R) log q(u) / tokens, units given as (b, step or None), looped."""
    logq = torch.log_softmax(logits, -1).gather(-1, batch.targets_BT.unsqueeze(-1)).squeeze(-1)
    rets = torch.tensor(returns)
    weights = weights or [1.0] * len(units)
    total, tokens = 0.0, 0
    for (b, step), ret, w in zip(units, rets, weights, strict=True):
        chosen = batch.policy_BT[b] & ((batch.step_BT[b] == step) if step is not None else True)
        total = total - w * (ret - rets.mean()) * logq[b][chosen].sum()
        tokens += int(chosen.sum())
    return total / tokens


def test_step_critique_loss_matches_a_looped_reference_and_skips_unannotated_steps() -> None:
    eps = with_critiques(episodes(n=3), [[8.0], [2.0, None], [5.0, 10.0, 0.0]])
    batch = make_batch(eps, critic="critic", score_range=(0.0, 10.0))
    logits = logits_for(batch)
    loss = compute_loss(logits, batch, LossConfig(kind="step_critique")).loss
    units = [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]
    expected = naive_unit_pg(logits, batch, units, [0.8, 0.2, 0.5, 1.0, 0.0])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    unannotated = batch.policy_BT[1] & (batch.step_BT[1] == 1)
    assert logits.grad[1][unannotated].abs().sum() == 0 and logits.grad[0][batch.policy_BT[0]].abs().sum() > 0


def test_uncertain_critiques_are_gated_out_or_weighted_down() -> None:
    eps = with_critiques(episodes(n=3), [[8.0], [2.0, 6.0], [3.0, 5.0, 7.0]])
    eps[1] = with_critiques([eps[1]], [[2.0, 6.0]], uncertainty=0.9)[0]
    batch = make_batch(eps, critic="critic")
    logits = logits_for(batch)
    gated = compute_loss(logits, batch, LossConfig(kind="step_critique", uncertainty="gate", uncertainty_threshold=0.5)).loss
    gated.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    weighted = compute_loss(logits, batch, LossConfig(kind="step_critique", uncertainty="weight")).loss
    units = [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    reference = naive_unit_pg(logits, batch, units, [0.8, 0.2, 0.6, 0.3, 0.5, 0.7], weights=[1.0, 0.1, 0.1, 1.0, 1.0, 1.0])
    assert weighted.item() == pytest.approx(reference.item(), rel=1e-5)


def test_token_uncertainty_gate_drops_tokens_where_the_teacher_is_unsure() -> None:
    batch = make_batch(episodes(), teacher="teacher")
    logits = logits_for(batch)
    p = batch.teacher.logprobs.float().exp()
    entropy = -(p * batch.teacher.logprobs.float()).sum(-1) - batch.teacher.tail_mass * batch.teacher.tail_mass.clamp_min(1e-30).log()
    threshold = float((entropy / np.log(8 + 1))[batch.policy_BT].median())  # half the tokens on each side
    compute_loss(logits, batch, LossConfig(kind="token", uncertainty="gate", uncertainty_threshold=threshold)).loss.backward()
    unsure = batch.policy_BT & (entropy / np.log(8 + 1) > threshold)
    sure = batch.policy_BT & ~unsure
    assert unsure.any() and sure.any()
    assert logits.grad[unsure].abs().sum() == 0 and (logits.grad[sure].abs().sum(-1) > 0).all()


def test_step_outcome_credits_each_step_with_the_reward_to_go() -> None:
    eps = episodes(n=2)
    rewarded = dataclasses.replace(eps[1], steps=(eps[1].steps[0], dataclasses.replace(eps[1].steps[1], reward=1.0)))
    batch = make_batch([eps[0], rewarded])
    logits = logits_for(batch)
    loss = compute_loss(logits, batch, LossConfig(kind="step_outcome")).loss
    expected = naive_unit_pg(logits, batch, [(0, 0), (1, 0), (1, 1)], [0.0, 1.0, 1.0])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_reward_weighted_regression_weighs_better_units_exponentially() -> None:
    eps = with_critiques(episodes(n=2), [[10.0], [0.0, 0.0]])
    batch = make_batch(eps, critic="critic")
    logits = logits_for(batch)
    loss = compute_loss(logits, batch, LossConfig(kind="episode_critique", objective="rwr", rwr_temperature=0.5)).loss
    logq = torch.log_softmax(logits, -1).gather(-1, batch.targets_BT.unsqueeze(-1)).squeeze(-1)
    advantage = torch.tensor([0.5, -0.5])
    w = torch.exp((advantage - 0.5) / 0.5)
    w = w / w.mean()
    sums = torch.stack([logq[b][batch.policy_BT[b]].sum() for b in range(2)])
    assert loss.item() == pytest.approx((-(w * sums).sum() / batch.policy_BT.sum()).item(), rel=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        LossConfig(kind="token", divergence="jsd", divergence_params={"beta": 0.3}),
        LossConfig(kind="token", uncertainty="weight"),
        LossConfig(kind="step", uncertainty="gate", uncertainty_threshold=0.9),
        LossConfig(kind="episode"),
        LossConfig(kind="episode", episode_return="outcome"),
        LossConfig(kind="step_critique", uncertainty="weight"),
        LossConfig(kind="episode_critique"),
        LossConfig(kind="step_outcome"),
        LossConfig(kind="episode_outcome"),
        LossConfig(kind="sft"),
        LossConfig(kind="hybrid", hybrid_weights={"token": 1.0, "step": 0.5, "episode": 0.2, "step_critique": 0.3, "sft": 0.1}),
    ],
    ids=lambda c: f"{c.kind}-{c.episode_return}-{c.uncertainty}",
)
def test_shards_divided_by_the_global_totals_add_up_to_the_whole_batch(config: LossConfig) -> None:
    # What data-parallel training relies on: shards of unequal size (tokens, steps, unannotated steps) still sum to the
    # batch's loss and gradient. The logits come from one shared table, as from one shared model.
    scores = [[7.0], [2.0, None], [5.0, 10.0, 0.0], [None, 3.0, 4.0, 9.0], [1.0, 1.0, 8.0, None, 6.0]]
    made = with_critiques(episodes(n=5), scores, uncertainty=0.2)
    made = [dataclasses.replace(e, steps=(*e.steps[:-1], dataclasses.replace(e.steps[-1], reward=e.reward))) for e in made]
    table = torch.randn(50, 50, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def batch_of(shard):
        return make_batch(shard, teacher="teacher", critic="critic")

    def loss_of(shard, totals=None):
        batch = batch_of(shard)
        return compute_loss(table[batch.input_ids_BT], batch, config, totals).loss

    whole = loss_of(made)
    (whole_grad,) = torch.autograd.grad(whole, table)
    shards = [made[:1], made[1:4], made[4:]]
    totals = LossTotals.summed(loss_totals(batch_of(shard), config) for shard in shards)
    assert totals.values == pytest.approx(loss_totals(batch_of(made), config).values)
    summed = sum(loss_of(shard, totals) for shard in shards)
    (summed_grad,) = torch.autograd.grad(summed, table)
    torch.testing.assert_close(summed, whole)
    torch.testing.assert_close(summed_grad, whole_grad)
