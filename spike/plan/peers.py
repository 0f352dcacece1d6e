"""Each peer's share of a placed model: its operators, routes and probes.

A `PeerPlan` is everything one process needs to run its part of the model: it is
what the client sends to a worker at set-up. Routes are computed once here: for every
ordered pair of peers, the list of crossing signals the first sends the second after
each step, packed into one buffer (see `Route`).
"""

from dataclasses import dataclass, field

import numpy as np
from nengo.builder.operator import TimeUpdate

from spike.builder.order import stable_toposort, step_order
from spike.builder.signals import memory_positions

_FLOAT64 = np.dtype(np.float64)  # compared by identity, cheaper than `==` every step


class Route:
    """The crossing signals one peer sends another, packed in a fixed layout.

    Parameters
    ----------
    bases : list of Signal
        Base signals (or, after merging, the views left in their place), in an order
        both ends agree on.

    Packing and unpacking copy, per base array of the peer's signals, all of the
    route's elements in it with one indexed copy (see `_copies`), not signal by
    signal: after merging, a route's many small signals are views of a few merged
    arrays, and a copy per signal would cost a Python call each, every step.
    """

    def __init__(self, bases):
        self.bases = list(bases)
        self.offsets = []
        offset = 0
        for base in self.bases:
            self.offsets.append(offset)
            offset += base.nbytes
        self.nbytes = offset
        self._bound = None  # (signals, copies) of the last SignalDict packed or unpacked

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_bound"] = None
        return state

    def _copies(self, signals):
        """``[(flat array, positions in it, positions in the buffer)]`` for
        ``signals`` (one entry per array owning the memory of the route's signals),
        or None if the route has other dtypes than float64 or signals
        in non-contiguous arrays (then it copies signal by signal).

        Positions are slices where they run contiguously. Computed once per
        SignalDict (its arrays never move).
        """
        bound = self.__dict__.get("_bound")
        if bound is not None and bound[0] is signals:
            return bound[1]
        groups = {}  # id of an owner array -> (flat owner, [positions], [buffer positions])
        copies = []
        for sig, offset in zip(self.bases, self.offsets):
            array = signals[sig.base]
            owner = _owner(array)
            if sig.dtype != np.float64 or not (
                array.flags.c_contiguous and owner.flags.c_contiguous
            ):
                copies = None
                break
            start = (_address(array) - _address(owner)) // 8
            flat, positions, slots = groups.setdefault(id(owner), (owner.reshape(-1), [], []))
            positions.append(start + memory_positions(sig).reshape(-1))
            slots.append(np.arange(sig.size) + offset // 8)
        if copies is not None:
            copies = [
                (flat, _as_slice(np.concatenate(positions)), _as_slice(np.concatenate(slots)))
                for flat, positions, slots in groups.values()
            ]
        self._bound = (signals, copies)
        return copies

    def pack(self, signals, out):
        """Copy the current values of the route's signals into ``out``: bytes
        (uint8), or float64 words where the caller keeps such a view of its buffer
        (rather than a view made every step)."""
        copies = self._copies(signals)
        if copies is None:
            out8 = out.view(np.uint8)
            for base, offset in zip(self.bases, self.offsets):
                value = signals[base]
                out8[offset : offset + value.nbytes] = value.reshape(-1).view(np.uint8)
            return out
        words = out if out.dtype is _FLOAT64 else out[: self.nbytes].view(np.float64)
        for flat, positions, slots in copies:
            words[slots] = flat[positions]
        return out

    def unpack(self, signals, payload):
        """Write a received buffer (bytes, or float64 words) into the route's signals."""
        copies = self._copies(signals)
        if copies is None:
            for base, offset in zip(self.bases, self.offsets):
                value = np.frombuffer(
                    payload, dtype=base.dtype, count=base.size, offset=offset
                )
                signals[base][...] = value.reshape(base.shape)
            return
        if getattr(payload, "dtype", None) is _FLOAT64:
            words = payload
        else:
            words = np.frombuffer(payload, dtype=np.float64, count=self.nbytes // 8)
        for flat, positions, slots in copies:
            flat[positions] = words[slots]

    def __len__(self):
        return len(self.bases)


def _owner(array):
    """The array whose memory ``array`` views (a compiled peer's signals all view
    its arena), or ``array`` itself."""
    while isinstance(array.base, np.ndarray) and array.base.dtype == array.dtype:
        array = array.base
    return array


def _address(array):
    return array.__array_interface__["data"][0]


def _as_slice(positions):
    """``positions`` (int array) as a slice if they are one increasing run."""
    if positions.size and np.array_equal(
        positions, np.arange(positions[0], positions[0] + positions.size)
    ):
        return slice(int(positions[0]), int(positions[0]) + positions.size)
    return positions


@dataclass
class ProbePlan:
    """A probe recorded by a peer: where to read and how often."""

    key: int  # index in model.probes
    signal: object  # the Signal read after each step
    period: float  # in steps; a sample is taken where n_steps % period < 1


@dataclass
class PeerPlan:
    """One peer's share of the model.

    Attributes
    ----------
    peer : int
        0 for the client, 1..n for workers.
    dt : float
    ops : list of Operator
        The peer's operators in the reference simulator's step order.
    order : list of int
        For each op, its position in the whole model's step order (the key of the
        random-number state it is given at reset).
    sends, recvs : dict
        ``{other peer: Route}`` of values sent after, and needed before, each step.
    probes : list of ProbePlan
    bases : list of Signal
        Every base signal the peer holds, in an order the client knows too
        (signals are named by their position here when read or written remotely).
    owned : list of int
        Positions in ``bases`` of the signals whose current value this peer is
        the authority on (it writes them, or is the first to hold a constant).
    optimize : bool
        Merge the operators with nengo's optimizer before running (`spike.runtime.merge`).
    compile : bool or "auto"
        Compile the step with PyTensor (`spike.runtime.compiler`); "auto" decides by size.
    matrix_dtype : str
        dtype of the matrices of compiled products ("float64" or "float32").
    """

    peer: int
    dt: float
    ops: list = field(default_factory=list)
    order: list = field(default_factory=list)
    sends: dict = field(default_factory=dict)
    recvs: dict = field(default_factory=dict)
    probes: list = field(default_factory=list)
    bases: list = field(default_factory=list)
    owned: list = field(default_factory=list)
    optimize: bool = False
    compile: object = False
    matrix_dtype: str = "float64"

    @property
    def is_idle(self):
        """True if the peer has nothing of its own to do but count time."""
        return not (self.probes or self.sends or self.recvs) and all(
            isinstance(op, TimeUpdate) for op in self.ops
        )


def make_plans(
    model,
    partition,
    peer_of_actor,
    n_peers,
    order=None,
    optimize=False,
    compile=False,
    matrix_dtype="float64",
    rng_order=None,
    probe_parts=None,
):
    """Divide ``model`` into one `PeerPlan` per peer.

    Parameters
    ----------
    model : nengo.builder.Model
    partition : Partition
    peer_of_actor : list of int
        From `spike.plan.placement.place`.
    n_peers : int
        Number of peers including the client.
    order : list of Operator, optional
        The model's operators, in any order: each peer's share is sorted by its own
        dependencies (default: the step order).
    optimize : bool, optional
        Whether peers merge their operators (see `PeerPlan.optimize`).
    compile : bool or "auto", optional
        Whether peers compile their step (see `PeerPlan.compile`).
    matrix_dtype : str, optional
        See `PeerPlan.matrix_dtype`.
    rng_order : list of Operator, optional
        The order random states are drawn in (`spike.runtime.rng`), if not ``order``: the
        model's order before ensembles were split. Operators not in it (the parts
        of split ensembles) get position -1 (they draw no random numbers).
    probe_parts : dict, optional
        ``{probe: ProbeParts}`` (`spike.builder.split`): such a probe is recorded as one
        `ProbePlan` per part, keyed ``len(model.probes) + j``; see `probe_record_keys`.
    """
    order = step_order(model) if order is None else order
    rng_position = {op: i for i, op in enumerate(rng_order if rng_order is not None else order)}
    plans = [
        PeerPlan(
            peer=p,
            dt=model.dt,
            optimize=optimize,
            compile=compile,
            matrix_dtype=matrix_dtype,
        )
        for p in range(n_peers)
    ]
    replicated = set(partition.replicated_ops)
    for op in order:
        position = rng_position.get(op, -1)
        if op in replicated:
            peers = range(n_peers)
        else:
            peers = [peer_of_actor[partition.actor_of_op[op]]]
        for peer in peers:
            plans[peer].ops.append(op)
            plans[peer].order.append(position)
    # each peer runs its share in a reproducible order (any dependency order gives
    # the same results; a fixed one lets compiled code be found in the cache)
    rank = {op: i for i, op in enumerate(model.operators)}
    for plan in plans:
        position = dict(zip(plan.ops, plan.order))
        plan.ops = stable_toposort(plan.ops, rank)
        plan.order = [position[op] for op in plan.ops]

    # crossing signals in the order the model's operators first touch them, which
    # is the same in every process (names hold memory addresses): the share a
    # worker is sent is then the same bytes for the same model (see spike.runtime.shares)
    routes = {}  # (src, dst) -> list of bases
    for base, (source, targets) in partition.crossing.items():
        src = peer_of_actor[source]
        for dst in sorted({peer_of_actor[t] for t in targets} - {src}):
            routes.setdefault((src, dst), []).append(base)
    for (src, dst), bases in sorted(routes.items()):
        plans[src].sends[dst] = Route(bases)
        plans[dst].recvs[src] = Route(bases)

    record_keys = probe_record_keys(model.probes, probe_parts)
    for key, probe in enumerate(model.probes):
        period = 1 if probe.sample_every is None else probe.sample_every / model.dt
        if probe_parts and probe in probe_parts:
            actors = partition.probe_part_actors[probe]
            records = zip(record_keys[key], probe_parts[probe].signals, actors)
        else:
            records = [(key, model.sig[probe]["in"], partition.probe_actor[probe])]
        for record_key, signal, actor in records:
            peer = 0 if actor is None else peer_of_actor[actor]
            plans[peer].probes.append(ProbePlan(key=record_key, signal=signal, period=period))
    _list_bases(plans, replicated)
    return plans


def probe_record_keys(probes, probe_parts=None):
    """``[[record key, ...] per probe]``: a probe's own index, or, for a probe
    recorded in parts, one key per part counted on from ``len(probes)``."""
    keys = []
    extra = len(probes)
    for index, probe in enumerate(probes):
        if probe_parts and probe in probe_parts:
            n = len(probe_parts[probe].signals)
            keys.append(list(range(extra, extra + n)))
            extra += n
        else:
            keys.append([index])
    return keys


def _list_bases(plans, replicated):
    """Fill in each plan's ``bases`` and ``owned`` (see `PeerPlan`)."""
    owner = {}
    for plan in plans:
        for op in plan.ops:
            if op not in replicated:
                for sig in list(op.sets) + list(op.incs) + list(op.updates):
                    owner[sig.base] = plan.peer
    # constants and the clock: the first peer that runs anything is the authority
    for plan in sorted(plans, key=lambda p: p.is_idle):
        seen = {}
        signals = [sig for op in plan.ops for sig in op.all_signals]
        for route in list(plan.sends.values()) + list(plan.recvs.values()):
            signals.extend(route.bases)
        signals.extend(probe.signal for probe in plan.probes)
        for sig in signals:
            if sig.base not in seen:
                seen[sig.base] = len(seen)
                owner.setdefault(sig.base, plan.peer)
        plan.bases = list(seen)
        plan.owned = [i for i, base in enumerate(plan.bases) if owner[base] == plan.peer]
