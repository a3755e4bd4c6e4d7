"""``inventory``: look a product up, read its stock, order what is missing.

``turns=2`` (or 3) makes it a conversation: after the agent says it is done,
the user asks for more products; the orders of earlier turns stay in the state,
and each turn is graded on everything asked for so far.

A stateful suite: each task carries a small catalogue (names, SKUs, stock
levels) that lives only for the episode. The right second call depends on the
first observation (the SKU ``find_product`` returned) and the right third on
the second (the stock ``get_stock`` returned), so a policy cannot succeed by
pattern-matching the prompt. Harder tasks restock several products, among
decoys with similar names. The verifier checks the orders placed, not the
final text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from opd.envs.registry import register_suite
from opd.envs.suite import Task, ToolSuite, Turn, Verdict
from opd.envs.tool_calls import FinalAnswer, ToolCalls, single_call
from opd.envs.tools import ToolContext, tool
from opd.errors import ConfigError, ToolError

Difficulty = Literal["easy", "medium", "hard"]
_PRODUCTS_TO_RESTOCK = {"easy": 1, "medium": 2, "hard": 3}
_COLOURS = ["red", "blue", "green", "black", "white", "yellow", "silver", "orange"]
_ITEMS = ["widget", "gadget", "sprocket", "bolt", "valve", "gear", "hinge", "spring", "bracket", "flange"]
_SKU_LINE = re.compile(r"^(SKU-\d{4}): (.+)$", re.MULTILINE)


@tool
def find_product(name: str, ctx: ToolContext) -> str:
    """Search the catalogue by product name; returns matching SKUs and names, one per line.

    Args:
        name: The product name, or part of it.
    """
    query = name.strip().lower()
    if not query:
        raise ToolError("name must not be empty")
    matches = [f"{sku}: {product}" for sku, product in ctx.task.data["catalogue"].items() if query in product]
    if not matches:
        raise ToolError(f"no product matches {name!r}")
    return "\n".join(matches)


@tool
def get_stock(sku: str, ctx: ToolContext) -> int:
    """Return how many units of a product are in stock.

    Args:
        sku: The product's SKU, e.g. "SKU-1234".
    """
    if sku not in ctx.state["stock"]:
        raise ToolError(f"unknown SKU {sku!r}; use find_product to look SKUs up")
    return ctx.state["stock"][sku]


@tool
def order(sku: str, quantity: int, ctx: ToolContext) -> str:
    """Order more units of a product; they are added to its stock.

    Args:
        sku: The product's SKU, e.g. "SKU-1234".
        quantity: How many units to order (at least 1).
    """
    if sku not in ctx.state["stock"]:
        raise ToolError(f"unknown SKU {sku!r}; use find_product to look SKUs up")
    if quantity < 1:
        raise ToolError(f"quantity must be at least 1, got {quantity}")
    ctx.state["stock"][sku] += quantity
    ctx.state["orders"][sku] = ctx.state["orders"].get(sku, 0) + quantity
    return f"Ordered {quantity} x {sku}. Stock is now {ctx.state['stock'][sku]}."


class InventoryTasks:
    """Catalogue, stock and targets; with ``turns`` > 1 the user asks for ``restock`` more products in each follow-up."""

    def __init__(self, restock: int, turns: int = 1) -> None:
        self.restock, self.turns = restock, turns

    def sample(self, rng: np.random.Generator) -> Task:
        names = [f"{c} {i}" for c in _COLOURS for i in _ITEMS]
        chosen = [names[k] for k in rng.choice(len(names), size=max(6, self.restock * self.turns), replace=False)]
        # Decoys whose names contain a target's name, so a lookup returns several lines to choose from.
        catalogue_names = chosen + [f"{chosen[k]} pro" for k in range(min(self.restock, 2))]
        skus = [f"SKU-{n:04d}" for n in rng.choice(9000, size=len(catalogue_names), replace=False) + 1000]
        catalogue = dict(zip(skus, catalogue_names, strict=True))
        stock = {sku: int(rng.integers(0, 40)) for sku in skus}
        targets = {}
        for sku, product in list(catalogue.items())[: self.restock * self.turns]:
            targets[product] = stock[sku] + int(rng.integers(1, 30))
        per_turn = [dict(list(targets.items())[k * self.restock : (k + 1) * self.restock]) for k in range(self.turns)]
        return Task(
            id="inv-" + "-".join(sorted(skus[: self.restock * self.turns])),
            prompt=(
                f"Restock {_wanted(per_turn[0])}. Look each product up by its exact name, check its stock, and order exactly "
                "the missing units. Say 'done' when finished."
            ),
            answer=targets,
            data={"catalogue": catalogue, "stock": stock, **({"turn_targets": per_turn} if self.turns > 1 else {})},
            follow_ups=tuple(f"Now restock {_wanted(wanted)} as well. Say 'done' when finished." for wanted in per_turn[1:]),
        )


def _wanted(targets: dict[str, int]) -> str:
    return "; ".join(f"the {product} to {level} units" for product, level in targets.items())


def _targets(task: Task, user_turn: int) -> dict[str, int]:
    """What the user has asked for up to ``user_turn`` (all of it in a one-turn task)."""
    per_turn = task.data.get("turn_targets") or [task.answer]
    return {product: level for wanted in per_turn[: user_turn + 1] for product, level in wanted.items()}


def init_state(task: Task) -> dict[str, Any]:
    return {"stock": dict(task.data["stock"]), "orders": {}}


def verify(task: Task, answer: str, context: ToolContext) -> Verdict:
    """Every product asked for so far (this user turn and earlier ones) restocked exactly, nothing else ordered."""
    sku_of = {product: sku for sku, product in task.data["catalogue"].items()}
    needed = {sku_of[p]: level - task.data["stock"][sku_of[p]] for p, level in _targets(task, context.user_turn).items()}
    orders = context.state["orders"]
    right = sum(orders.get(sku) == quantity for sku, quantity in needed.items())
    wrong = [sku for sku in orders if sku not in needed or orders[sku] != needed[sku]]
    if not wrong and right == len(needed):
        return Verdict(1.0, True, "All products restocked exactly.")
    reason = f"{right} of {len(needed)} products restocked exactly" + (f"; wrong orders for {sorted(wrong)}" if wrong else "")
    return Verdict(0.0 if wrong else right / len(needed), False, reason + ".")


class InventoryExpert:
    """Finds, checks and orders one product at a time, in a random (seeded) product order; answers each user turn in turn."""

    def act(self, task: Task, history: Sequence[Turn], rng: np.random.Generator) -> ToolCalls | FinalAnswer:
        progress = _progress(task, history)
        user_turn = sum(isinstance(turn.action, FinalAnswer) for turn in history)  # each earlier answer was followed up
        wanted = _targets(task, user_turn)
        pending = [p for p in wanted if "ordered" not in progress.get(p, {})]
        if not pending:
            return FinalAnswer("done")
        started = [p for p in pending if p in progress]
        product = started[0] if started else pending[int(rng.integers(len(pending)))]
        facts = progress.get(product, {})
        if "sku" not in facts:
            return single_call("find_product", name=product)
        if "stock" not in facts:
            return single_call("get_stock", sku=facts["sku"])
        return single_call("order", sku=facts["sku"], quantity=wanted[product] - facts["stock"])


def _progress(task: Task, history: Sequence[Turn]) -> dict[str, dict[str, Any]]:
    """What the observations so far revealed, per target product."""
    progress: dict[str, dict[str, Any]] = {}
    product_of_sku: dict[str, str] = {}
    for turn in history:
        if not isinstance(turn.action, ToolCalls) or turn.observation.startswith("Error"):
            continue
        call = turn.action.calls[0]
        if call.name == "find_product":
            for sku, product in _SKU_LINE.findall(turn.observation):
                if product in task.answer:
                    progress.setdefault(product, {})["sku"] = sku
                    product_of_sku[sku] = product
        elif call.name == "get_stock" and call.arguments.get("sku") in product_of_sku:
            progress[product_of_sku[call.arguments["sku"]]]["stock"] = int(turn.observation)
        elif call.name == "order" and call.arguments.get("sku") in product_of_sku:
            progress[product_of_sku[call.arguments["sku"]]]["ordered"] = True
    return progress


@register_suite("inventory")
def inventory_suite(difficulty: Difficulty = "medium", turns: int = 1) -> ToolSuite:
    """Look up products, read their stock and order the missing units; easy, medium, hard = 1, 2, 3 products (per user turn)."""
    if difficulty not in _PRODUCTS_TO_RESTOCK:
        raise ConfigError(f"difficulty must be one of {list(_PRODUCTS_TO_RESTOCK)}, got {difficulty!r}.")
    if turns not in (1, 2, 3):
        raise ConfigError(f"turns (user turns per conversation) must be 1, 2 or 3, got {turns!r}.")
    restock = _PRODUCTS_TO_RESTOCK[difficulty]
    return ToolSuite(
        name="inventory",
        tools=(find_product, get_stock, order),
        tasks=InventoryTasks(restock, turns),
        verify=verify,
        init_state=init_state,
        expert=InventoryExpert(),
        max_turns=(3 * restock + 1) * turns + 3,
        system_prompt=(
            "You are an inventory agent. Use the tools to look products up, check stock and place orders, "
            "one call per turn. Say 'done' when every requested product is restocked."
        ),
        description=inventory_suite.__doc__ or "",
    )
