"""Optimisers over a cohort's flat parameter buffer: rate policies, transforms and named chains
(the parameter layout they read is ``groklab.models.layout``)."""

from groklab.optim.build import build_optimizer
from groklab.optim.chains import chain_names, register_chain
from groklab.optim.rate_policy import RatePolicy
from groklab.optim.transforms import Chain

__all__ = ["Chain", "RatePolicy", "build_optimizer", "chain_names", "register_chain"]
