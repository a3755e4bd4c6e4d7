"""``opd serve-teacher MODEL``: serve a white-box teacher over HTTP with opd's scoring contract (``POST /score``)."""

from __future__ import annotations

import typer
from rich.markup import escape

from opd.cli.render import console, fail


def serve_teacher(
    model: str = typer.Argument(..., help="Hub name or local directory of the teacher (a transformers causal LM)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 to be reached from the training machines (there is no login)."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to serve on."),
    device: str = typer.Option("cpu", help="Where the model runs: cpu, cuda, cuda:1, ..."),
    dtype: str = typer.Option("auto", help="Weights' dtype: auto (as saved), float32, bfloat16 or float16."),
    max_k: int = typer.Option(1024, min=1, help="Largest top-k a client may ask for."),
    batch_tokens: int = typer.Option(16_384, min=1, help="Padded tokens per forward pass."),
) -> None:
    """Serve MODEL's log-probs for training: top-k, exact tail mass and any candidate ids, per position."""
    import torch
    import uvicorn  # here, not at the top: `opd --help` loads no server
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from opd.agents.score_server import create_score_app
    from opd.agents.scoring import LocalScorer

    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        fail(f"--dtype must be auto, float32, bfloat16 or float16, got {dtype!r}.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        weights = AutoModelForCausalLM.from_pretrained(model, dtype="auto" if dtype == "auto" else getattr(torch, dtype)).to(device)
    except (OSError, ValueError) as exc:
        fail(f"Cannot load {model!r}: {exc}")
    scorer = LocalScorer(weights, batch_tokens=batch_tokens, pad_id=tokenizer.pad_token_id or 0)
    url = escape(f"http://{host}:{port}/score")
    console.print(f"opd serve-teacher: {escape(model)} on {device} at [bold]{url}[/]; Ctrl+C stops.", soft_wrap=True, highlight=False)
    app = create_score_app(scorer, name=model, vocab_size=int(weights.config.vocab_size), max_k=max_k)
    uvicorn.run(app, host=host, port=port, log_level="warning")
