"""Optional integrations (docs/design.md, decision 7): Optuna search (``groklab.tune``), Ray
execution (``ray_executor``) and TensorBoard export (``tensorboard``). Each lives behind an
extra (``pip install 'groklab[tune]'``, ``[ray]``, ``[tensorboard]``); the core never imports
them, and a missing extra fails only the feature that needs it, with a one-line hint.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise ``MissingExtra`` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{feature} needs the '{extra}' extra: pip install "
                           f"'groklab[{extra}]' (module {module} is not installed)") from None


__all__ = ["MissingExtra", "require"]
