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
from opd.trajectories import Run


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
    loss = compute_loss(logits, batch, LossConfig(kind="step")).loss
    values = token_divergence(logits, batch.teacher, "reverse_kl", mask_BT=batch.policy_BT).detach()
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


@pytest.mark.parametrize(
    "config",
    [
        LossConfig(kind="token", divergence="jsd", divergence_params={"beta": 0.3}),
        LossConfig(kind="step"),
        LossConfig(kind="episode"),
        LossConfig(kind="episode", episode_return="outcome"),
        LossConfig(kind="sft"),
        LossConfig(kind="hybrid", hybrid_weights={"token": 1.0, "step": 0.5, "episode": 0.2, "sft": 0.1}),
    ],
    ids=lambda c: c.kind + ("-" + c.episode_return if c.kind == "episode" else ""),
)
def test_shards_divided_by_the_global_totals_add_up_to_the_whole_batch(config: LossConfig) -> None:
    # What data-parallel training relies on: shards of unequal size (tokens, steps) still sum to the batch's loss
    # and gradient. The logits come from one shared table, as from one shared model.
    made = episodes(n=5)
    table = torch.randn(50, 50, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def loss_of(shard, totals=None):
        batch = make_batch(shard, teacher="teacher")
        return compute_loss(table[batch.input_ids_BT], batch, config, totals).loss

    whole = loss_of(made)
    (whole_grad,) = torch.autograd.grad(whole, table)
    shards = [made[:1], made[1:4], made[4:]]
    parts = [loss_totals(make_batch(shard, teacher="teacher"), config) for shard in shards]
    totals = LossTotals(*(sum(values) for values in zip(*(dataclasses.astuple(p) for p in parts), strict=True)))
    assert dataclasses.astuple(totals) == pytest.approx(dataclasses.astuple(loss_totals(make_batch(made, teacher="teacher"), config)))
    summed = sum(loss_of(shard, totals) for shard in shards)
    (summed_grad,) = torch.autograd.grad(summed, table)
    torch.testing.assert_close(summed, whole)
    torch.testing.assert_close(summed_grad, whole_grad)
