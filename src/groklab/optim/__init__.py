"""Optimisers over a cohort's flat parameter buffer: layout, rate policies, transform chains."""

from groklab.optim.batched import build_optimizer
from groklab.optim.groups import GROUPS, LR_CONFIGS, parse_lr
from groklab.optim.layout import ParamInfo, ParamLayout, assign_groups
from groklab.optim.rates import RatePolicy
from groklab.optim.transforms import Chain

__all__ = ["Chain", "GROUPS", "LR_CONFIGS", "ParamInfo", "ParamLayout", "RatePolicy",
           "assign_groups", "build_optimizer", "parse_lr"]
