"""The config's `inference` section: read from YAML, validated, typos named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from opd.distill.config import load_config
from opd.errors import ConfigError


def write(tmp_path: Path, inference: dict) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"student": "s", "teacher": "t", "inference": inference}))
    return path


def test_the_inference_section_reads_from_yaml(tmp_path: Path) -> None:
    inference = {
        "student": {"backend": "vllm", "server_args": ["--max-num-seqs", "8"]},
        "teacher": {"backend": "http", "urls": ["http://a:1"]},
    }
    config = load_config(write(tmp_path, inference))
    assert config.inference.student.backend == "vllm" and config.inference.student.server_args == ("--max-num-seqs", "8")
    assert config.inference.teacher.urls == ("http://a:1",) and config.inference.teacher.api == "opd"
    assert load_config(write(tmp_path, {})).inference.teacher.backend == "hf"  # the default: all in process


@pytest.mark.parametrize(
    ("inference", "message"),
    [
        ({"teacher": {"backend": "http"}}, "needs urls"),
        ({"teacher": {"backend": "htp"}}, "inference.teacher.backend: expected one of 'hf', 'http'; got 'htp'"),
        ({"student": {"backend": "sglang"}}, "inference.student.backend: expected one of 'hf', 'vllm'"),
        ({"teacher": {"backend": "http", "url": ["http://a:1"]}}, "Did you mean 'urls'"),
        ({"teacher": {"backend": "http", "urls": ["http://a:1"], "support": "both"}}, "support: expected one of 'teacher', 'student'"),
    ],
)
def test_bad_inference_settings_say_what_is_expected(tmp_path: Path, inference: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, inference))
