"""The viewer's Jinja2 templates, with autoescaping on for every template.

Episode text (model output, tool output, task prompts) reaches pages only
through ``{{ }}``, which escapes it; no template marks episode data ``|safe``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

__all__ = ["render"]


def _short(identifier: str) -> str:
    return identifier[:12]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


_environment = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # for every template, whatever its name
    undefined=StrictUndefined,  # a misspelt variable is an error in the tests, not a silently empty cell
)
_environment.filters.update(short=_short, percent=_percent, when=_when, pretty=_pretty)
_templates = Jinja2Templates(env=_environment)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    return _templates.TemplateResponse(request, name, context, status_code=status_code)
