"""Optimisers over a cohort's flat parameter buffer, learning-rate groups and gradient filters."""

from groklab.optim.batched import BatchedOptimizer, make_optimizer
from groklab.optim.groups import GROUPS, LR_CONFIGS, assign_groups, parse_lr

__all__ = ["BatchedOptimizer", "make_optimizer", "GROUPS", "LR_CONFIGS", "assign_groups",
           "parse_lr"]
