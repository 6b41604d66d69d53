"""JSON as the standard defines it, for every file and line sumctl writes, and for the numbers
it reads from files.

Python's json writes NaN and Infinity unless told not to, and reads them back (and reads 1e999
as infinity): none of them is JSON, and one in a report or a record breaks jq, JavaScript and
every strict reader downstream. So every writer goes through strict_dumps, and files whose
numbers we use are read with strict_loads: a number that is not finite is refused at its
place, never carried into a sum, a mean or an output.
"""

from __future__ import annotations

import json
import math


class NonFiniteNumber(ValueError):
    """A number that JSON cannot hold: NaN, an infinity, or a literal too large for a float."""


def strict_dumps(obj, **kwargs) -> str:
    """json.dumps that refuses NaN and the infinities, naming where in `obj` the first one is
    (a report's `results[2].latency_s`), so the writer's error says what to fix."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        found = non_finite_at(obj)
        if found is None:
            raise
        where, value = found
        raise NonFiniteNumber(f"{where or 'the value'} is {value}, which JSON cannot hold") from None


def non_finite_at(obj, where: str = "") -> tuple[str, float] | None:
    """The path and value of the first NaN or infinity inside `obj`, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where, obj)
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for path, value in items:
        found = non_finite_at(value, path)
        if found is not None:
            return found
    return None


def strict_loads(text: str | bytes):
    """json.loads that refuses, with NonFiniteNumber naming the literal, NaN, Infinity and any
    number past a float's range (1e999, or an integer of 400 digits): whatever reads the value
    next (a sum, a mean, float(), int()) would turn it into an infinity or an OverflowError."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                      parse_int=_float_sized_int)


def _refuse_constant(name: str):
    raise NonFiniteNumber(f"{name} is not a number JSON allows")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"{_shown(literal)} is too large for a number")
    return value


def _float_sized_int(literal: str) -> int:
    # Checked on the text: int() of thousands of digits is slow, and refused past 4,300.
    if len(literal.lstrip("-")) > 308:
        raise NonFiniteNumber(f"{_shown(literal)} ({len(literal)} digits) is too large for a "
                              "number")
    return int(literal)


def _shown(literal: str) -> str:
    return literal if len(literal) <= 30 else literal[:12] + "..." + literal[-12:]
