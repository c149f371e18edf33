"""Argument checks shared by the stages: real numbers in a range, whole numbers."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["check_integer", "check_real"]


def _as_real(value: Any) -> float | None:
    """``value`` as a float if it is a real number (Python or NumPy, not a bool), else None."""
    if isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    ):
        return float(value)
    return None


def check_real(
    name: str,
    value: Any,
    low: float = 0.0,
    high: float = np.inf,
    *,
    low_open: bool = True,
    high_open: bool = True,
    unit: str = "",
    optional: bool = False,
) -> float | None:
    """Check that ``value`` is a real number in a range; return it as a float.

    Parameters
    ----------
    name : str
        Argument name, for the message.
    value : object
        The value given.
    low, high : float
        Range bounds (``high`` may be ``inf``; an infinite bound is never included unless
        ``high_open`` is False).
    low_open, high_open : bool
        Whether each bound is excluded.
    unit : str
        Unit shown after the range (e.g. ``"eV"``).
    optional : bool
        Whether None is accepted (and returned).

    Returns
    -------
    float or None

    Raises
    ------
    ValueError
        Naming the argument, the value given and the valid range.
    """
    if value is None and optional:
        return None
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    where = f"{interval} [{unit}]" if unit else interval
    number = _as_real(value)
    if number is not None and not np.isnan(number):
        above = number > low if low_open else number >= low
        below = number < high if high_open else number <= high
        if above and below:
            return number
    none = " (or None)" if optional else ""
    raise ValueError(f"{name} must be a number in {where}{none}, got {value!r}")


def check_integer(name: str, value: Any, minimum: int = 1, *, optional: bool = False) -> int | None:
    """Check that ``value`` is a whole number ``>= minimum``; return it as an int.

    Parameters
    ----------
    name : str
        Argument name, for the message.
    value : object
        The value given (an int, a NumPy integer or an integral float such as ``2.0``).
    minimum : int
        Smallest valid value.
    optional : bool
        Whether None is accepted (and returned).

    Returns
    -------
    int or None

    Raises
    ------
    ValueError
        Naming the argument, the value given and the valid range.
    """
    if value is None and optional:
        return None
    number = _as_real(value)
    if number is not None and np.isfinite(number) and number.is_integer() and number >= minimum:
        return int(number)
    none = " (or None)" if optional else ""
    raise ValueError(f"{name} must be a whole number >= {minimum}{none}, got {value!r}")
