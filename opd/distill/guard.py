"""The regression guard: notice when distillation makes the student worse, say so, and optionally stop or roll back.

On-policy distillation can degrade a student it was meant to improve: a few
updates of top-k reverse KL at a high learning rate have taken a tiny student
from 55% to 20% on its own training tasks while the teacher was at 100%
(docs/training.md, "When distillation hurts"). The guard watches two signals:

* **held-out regression**: after each evaluation, the success rate is compared
  with the best one so far (the student's start counts, evaluated before the
  first update). A regression is a drop beyond the interval: the best point
  estimate lies above the current evaluation's 95% Wilson interval.
* **divergence spike**: an update whose loss exceeds ``spike_factor`` times the
  median of the previous ``spike_window`` updates' losses.

Each is reported in the metrics (``guard/*``) and logged as a warning. With
``action: stop`` the loop ends after a regression (the run's last checkpoint
is written as usual); with ``action: rollback`` the model and optimizer go back
to the best evaluation's weights (kept in ``OUTPUT_DIR/best``) and training goes
on from there. Spikes are reported only: a single update's loss is too noisy
to act on, the evaluation that follows it decides.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import statistics
from collections import deque
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from opd.distill.evaluate import EvalResult
from opd.errors import ConfigError

__all__ = ["Guard", "GuardConfig"]

logger = logging.getLogger(__name__)

GuardAction = Literal["none", "warn", "stop", "rollback"]


@dataclasses.dataclass(frozen=True)
class GuardConfig:
    action: GuardAction = "warn"  # on a held-out regression: none (no guard), warn (metrics + log), stop, or rollback to the best
    eval_at_start: bool = True  # evaluate the student before the first update, so its start is the bar (and the rollback target)
    patience: int = 1  # consecutive regressed evaluations before stop/rollback acts (warnings start at the first)
    spike_factor: float = 5.0  # a divergence spike: an update's loss above this many times the recent median
    spike_window: int = 10  # updates in that median (no spike is called before 3 updates)

    def __post_init__(self) -> None:
        if self.action not in ("none", "warn", "stop", "rollback"):
            raise ConfigError(f"guard.action must be none, warn, stop or rollback; got {self.action!r}.")
        if self.patience < 1 or self.spike_window < 3 or self.spike_factor <= 1.0:
            raise ConfigError(
                "guard: patience must be at least 1, spike_window at least 3 and spike_factor above 1; "
                f"got {self.patience}, {self.spike_window}, {self.spike_factor}."
            )

    @property
    def enabled(self) -> bool:
        return self.action != "none"


def regressed(best: EvalResult, current: EvalResult) -> bool:
    """Whether ``current`` is worse than ``best`` beyond ``current``'s 95% interval."""
    return best.success_rate > current.ci_high


class Guard:
    """The guard's state over one run: the best evaluation, the recent losses, and what it did.

    Every rank of a data-parallel job keeps one and feeds it the same values (evaluations
    are broadcast, losses summed over ranks), so all ranks decide alike; only the main
    rank writes the best weights, and every rank reads them back on a rollback.
    """

    def __init__(self, config: GuardConfig, directory: Path, *, is_main: bool = True) -> None:
        self.config = config
        self.directory = directory  # OUTPUT_DIR/best: the weights of the best evaluation so far
        self.is_main = is_main
        self.best: tuple[int, EvalResult] | None = None
        self.losses: deque[float] = deque(maxlen=config.spike_window)
        self.strikes = 0  # consecutive regressed evaluations
        self.rollbacks = 0
        self.stop = False

    def after_update(self, update: int, loss: float) -> dict[str, float]:
        """Metrics for one update's loss: ``guard/spike`` is 1 when it exceeds spike_factor x the recent median."""
        if loss != loss:  # NaN: a skipped update; the loop already reports it
            return {"guard/spike": 0.0}
        spike = len(self.losses) >= 3 and loss > self.config.spike_factor * max(statistics.median(self.losses), 1e-12)
        if spike:
            median = statistics.median(self.losses)
            logger.warning(
                "Guard: divergence spike at update %d: loss %.4g is %.1fx the median %.4g of the last %d updates",
                update, loss, loss / max(median, 1e-12), median, len(self.losses),
            )  # fmt: skip
        self.losses.append(loss)
        return {"guard/spike": float(spike)}

    def after_eval(
        self, update: int, result: EvalResult, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, optimizer: torch.optim.Optimizer
    ) -> dict[str, float]:
        """Compare ``result`` with the best so far; keep new bests, warn, stop or roll back. Returns ``guard/*`` metrics."""
        values = {"guard/regression": 0.0, "guard/rolled_back": 0.0}
        if self.best is None or result.success_rate > self.best[1].success_rate:
            self.best, self.strikes = (update, result), 0
            if self.is_main:
                self._save(model, tokenizer, optimizer, update, result)
        elif regressed(self.best[1], result):
            self.strikes += 1
            values["guard/regression"] = 1.0
            best_update, best = self.best
            logger.warning(
                "Guard: held-out success regressed at update %d: %s, below the best %.1f%% (update %d) beyond its interval%s",
                update, result.describe(), 100 * best.success_rate, best_update, self._consequence(),
            )  # fmt: skip
            if self.strikes >= self.config.patience and self.config.action == "stop":
                self.stop = True
            elif self.strikes >= self.config.patience and self.config.action == "rollback":
                self._restore(model, optimizer)
                self.rollbacks += 1
                self.strikes = 0
                values["guard/rolled_back"] = 1.0
        else:
            self.strikes = 0
        assert self.best is not None
        return {**values, "guard/best_success": self.best[1].success_rate, "guard/best_update": float(self.best[0])}

    def resume(self) -> None:
        """Take the best evaluation from a previous run's ``best.json`` (after a resume), if there is one."""
        record = self.directory / "best.json"
        if record.is_file():
            data = json.loads(record.read_text())
            update = data.pop("update")
            self.best = (update, EvalResult(**data))

    def _consequence(self) -> str:
        if self.config.action == "warn":  # what benchmarks/stability.py found: a too-high learning rate collapses every divergence
            return "; a lower learning_rate usually cures it, and guard.action: rollback undoes it (docs/training.md)"
        if self.strikes < self.config.patience:
            return ""
        return "; stopping" if self.config.action == "stop" else "; rolling back to the best weights"

    def _save(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, optimizer: torch.optim.Optimizer, update: int, result: EvalResult
    ) -> None:
        staging = self.directory.with_name(self.directory.name + ".staging")  # a crash mid-save leaves the previous best intact
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if self.config.action == "rollback":  # the weights only where they may be needed
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        (staging / "best.json").write_text(json.dumps({"update": update, **dataclasses.asdict(result)}, indent=2))
        if self.directory.exists():
            shutil.rmtree(self.directory)
        staging.rename(self.directory)

    def _restore(self, model: PreTrainedModel, optimizer: torch.optim.Optimizer) -> None:
        if not (self.directory / "optimizer.pt").is_file():
            raise ConfigError(f"Guard: no best weights at {self.directory} to roll back to; was the output directory removed?")
        best = AutoModelForCausalLM.from_pretrained(self.directory)
        model.load_state_dict(best.state_dict())
        optimizer.load_state_dict(torch.load(self.directory / "optimizer.pt", weights_only=True))
