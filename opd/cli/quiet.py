"""Keep third-party progress bars and warnings out of opd's own commands.

transformers and huggingface_hub draw tqdm bars (``Loading weights``,
``Writing model shards``) and warn about things a user of opd cannot act on;
opd's commands show their own progress. Set before those libraries are
imported (they read these variables then), so nothing heavy is imported here.
``opd --verbose`` leaves them as they are.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["quiet_libraries"]

_ENVIRONMENT = {
    "TQDM_DISABLE": "1",  # every tqdm bar, whoever draws it
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
_LIBRARIES = ("transformers", "huggingface_hub", "torch", "tokenizers", "litellm", "httpx", "accelerate")


def quiet_libraries() -> None:
    for name, value in _ENVIRONMENT.items():
        os.environ.setdefault(name, value)  # a user's own setting wins
    pattern = r"(" + "|".join(_LIBRARIES) + r")(\.|$)"
    warnings.filterwarnings("ignore", module=pattern)
    for library in _LIBRARIES:
        logging.getLogger(library).setLevel(logging.ERROR)
    # Libraries already imported (in a test process, say) read the variables too early: tell them directly.
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
