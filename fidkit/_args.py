"""Checks of the arguments of fidkit's public functions.

Each gives one line (a :class:`~fidkit.errors.FidkitError` subclass, ``error``) for a value
of the wrong kind, instead of a raw ``TypeError`` from deep inside a pass, a bool taken as a
number, or any truthy string taken as True. Imported by the modules of every stage; imports
only :mod:`fidkit.errors`.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import FidkitError


def shown(value) -> str:
    """``repr(value)`` on one line, cut to 80 characters (an array's repr spans lines)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def flag(value, name: str, error: type = FidkitError) -> bool:
    """``value`` as a bool: True or False (Python's or numpy's) only; ``"no"`` or 1 is refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise error(f"{name} must be True or False, got {shown(value)}")


def is_int(value) -> bool:
    """Whether ``value`` is a Python or numpy integer that is not a bool (nor numpy's)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))



def count(value, name: str, minimum: int = 1, error: type = FidkitError, hint: str = "") -> int:
    """``value`` as an int of at least ``minimum``: a Python or numpy integer, not a bool or a
    float (2.0 included: a count is never a measurement). ``hint``: what the count is, for the
    message (e.g. `` (--pr-k)``)."""
    if not is_int(value) or value < minimum:
        raise error(f"{name}{hint} must be an integer of at least {minimum}, got {shown(value)}")
    return int(value)


def seed(value, name: str = "seed", error: type = FidkitError) -> int:
    """``value`` as a numpy seed: an integer from 0 to 2**32 − 1."""
    if not is_int(value) or not 0 <= value < 2 ** 32:
        raise error(f"{name} must be an integer from 0 to 2**32 - 1 (a numpy seed), got {shown(value)}")
    return int(value)


def real(value, name: str, error: type = FidkitError, positive: bool = False) -> float:
    """``value`` as a finite float (> 0 when ``positive``): a Python or numpy real, not a bool."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not math.isfinite(float(value)) or (positive and not float(value) > 0):
        raise error(f"{name} must be a finite {'positive ' if positive else ''}number, got {shown(value)}")
    return float(value)
