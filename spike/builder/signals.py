"""Helpers on nengo's signals, for the rewrites of split and divided models.

Splitting an ensemble (`spike.builder.split`) and dividing an actor into groups
(`spike.builder.passthrough`) both make new base signals and rebind operators onto
them; the routes of `spike.plan.peers` and the compiler's arena address a signal's
elements by their positions in the base's memory.
"""

import copy

import numpy as np
from nengo.builder.operator import TimeUpdate
from nengo.builder.signal import Signal


def derived_name(sig, suffix):
    """The name of a signal made from ``sig``: its name and ``suffix``, or None (nengo
    then shows the memory address) if ``sig`` has no name of its own: an address in a
    name would make the same share pickle to other bytes in every run (`spike.runtime.shares`)."""
    name = getattr(sig, "_name", None)
    return None if name is None else f"{name}{suffix}"


def view_on(view, base):
    """``view``'s elements, in ``base``: ``base`` itself if ``view`` is all of its
    own base (``base`` may then be a part of it, see `_Splitter`), else a view of
    ``base`` at the same place (``base`` shaped like ``view.base``)."""
    if is_whole_base(view):
        return base
    value = np.ndarray(
        view.shape, dtype=view.dtype, buffer=base.initial_value.base, offset=view.offset,
        strides=view.strides,
    )
    suffix = "" if base._name is None else f" (in {base._name})"
    return Signal(value, name=derived_name(view, suffix), base=base,
                  readonly=view.readonly, offset=view.offset)


def rebind(op, mapping):
    """A copy of ``op`` whose signals on a base in ``mapping`` (``{old base: new
    base}``) are on the new base instead, views staying views."""
    new = copy.copy(op)
    for name in ("sets", "incs", "reads", "updates"):
        setattr(new, name, [
            view_on(s, mapping[s.base]) if s.base in mapping else s
            for s in getattr(op, name)
        ])
    return new


def ops_by_base(operators):
    """``{base signal: [operators touching it, in order]}``."""
    touching = {}
    for op in operators:
        for sig in op.all_signals:
            ops = touching.setdefault(sig.base, [])
            if not ops or ops[-1] is not op:
                ops.append(op)
    return touching


def clock_bases(operators):
    """The bases of the step counter and the time, which ``TimeUpdate`` sets: every
    worker runs its own copy of it (`spike.builder.partition`), so they join nothing."""
    return {sig.base for op in operators if isinstance(op, TimeUpdate) for sig in op.all_signals}


def part_bounds(n, n_parts):
    """``n_parts`` ranges covering ``range(n)`` whose sizes differ by at most one."""
    edges = [(n * k) // n_parts for k in range(n_parts + 1)]
    return [(edges[k], edges[k + 1]) for k in range(n_parts)]


def is_whole_base(sig):
    """True for a base signal, or a view that is all of its base, in order."""
    if sig.base is sig:
        return True
    return (
        sig.shape == sig.base.shape
        and sig.elemoffset == 0
        and sig.elemstrides == sig.base.elemstrides
    )


def memory_positions(sig):
    """Positions (in the base's memory order) of ``sig``'s elements, shaped like it."""
    base = sig.base
    positions = np.arange(base.size, dtype=np.int64)
    if sig.base is sig:
        strides = tuple(s // sig.itemsize for s in sig.strides)
        offset = 0
    else:
        strides = sig.elemstrides
        offset = sig.elemoffset
    return np.lib.stride_tricks.as_strided(
        positions[offset:], shape=sig.shape, strides=tuple(s * 8 for s in strides)
    ).copy()
