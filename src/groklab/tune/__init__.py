"""``groklab tune``: an Optuna search over run settings, layer-wise rates by default.

``space`` (what is searched) and ``objective`` (what is optimised, read from the store) need
no extra; ``search.run_search`` runs the ask/tell loop and needs the ``tune`` extra (Optuna),
imported only when a search starts.
"""

from groklab.tune.objective import DEFAULT_METRIC, default_direction, known_metrics
from groklab.tune.search import TuneError, TuneResult, run_search
from groklab.tune.space import Space, SpaceError, build_space, load_space

__all__ = ["DEFAULT_METRIC", "Space", "SpaceError", "TuneError", "TuneResult", "build_space",
           "default_direction", "known_metrics", "load_space", "run_search"]
