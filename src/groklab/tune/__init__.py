"""``groklab tune``: an Optuna search over run settings, layer-wise rates by default.

``space`` (what is searched) and ``objective`` (what is optimised, read from the store) need
no extra; ``search`` runs the ask/tell loop and needs the ``tune`` extra (Optuna), imported
only when a search starts.
"""

from groklab.tune.objective import DEFAULT_METRIC, default_direction, known_metrics
from groklab.tune.space import Space, SpaceError, build_space, load_space


def tune(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    """``groklab.tune.search.tune`` (imported on call, so Optuna stays optional)."""
    from groklab.tune.search import tune as run

    return run(*args, **kwargs)


__all__ = ["DEFAULT_METRIC", "Space", "SpaceError", "build_space", "default_direction",
           "known_metrics", "load_space", "tune"]
