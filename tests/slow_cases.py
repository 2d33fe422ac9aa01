"""Parametrizations split between CI's fast set and the slow set (``./run slow-tests``).

CI keeps a representative of each claim (every loss, task, backbone, example kind); the rest of a
parity matrix carries ``pytest.mark.slow`` so the suite fits CI's budget. Ids stay those pytest gives
the plain values, so ``-k`` selections and earlier reports keep their names.

>>> [getattr(c, "marks", ()) and "slow" or c for c in split([1, 2, 3], fast=[2])]
['slow', 2, 'slow']
"""

from __future__ import annotations

import itertools

import pytest


def split(cases, fast):
    """``cases`` as parametrize values; those not in ``fast`` are marked slow."""
    fast = list(fast)
    missing = [f for f in fast if f not in list(cases)]
    if missing:
        raise ValueError(f"fast cases {missing} are not among the parametrized cases")
    return [c if c in fast else pytest.param(*(c if isinstance(c, tuple) else (c,)), marks=pytest.mark.slow)
            for c in cases]


def split_product(*axes, fast):
    """The cross product of ``axes`` (as stacked parametrize decorators would give, first axis
    outermost in the id), with the combinations not in ``fast`` marked slow."""
    return split(list(itertools.product(*axes)), [tuple(f) for f in fast])


def split_indices(cases, fast_indices):
    """``cases`` (a list of tuples whose items may be unhashable, e.g. kwargs dicts), fast by position."""
    return [c if i in fast_indices else pytest.param(*c, marks=pytest.mark.slow) for i, c in enumerate(cases)]
