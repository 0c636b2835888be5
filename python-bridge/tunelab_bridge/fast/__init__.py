"""The fast %tune path: same losses and adapter weights as mlx-lm's step, less work per step.

Placeholder docstring; see the module docs.
"""

from .applicability import DEFAULT_PREFIX_CACHE_MB, Decision, FastOptions, FastPlan, plan
from .loss import FastLossFn
from .prefix_cache import PrefixCacheStats

__all__ = ["DEFAULT_PREFIX_CACHE_MB", "Decision", "FastOptions", "FastPlan", "FastLossFn", "PrefixCacheStats", "plan"]
