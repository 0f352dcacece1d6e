"""Building a Nengo network with nengo's own builder, remembering who made each operator.

Spike never re-implements nengo's builder: every random parameter (encoders, gains,
decoders, eval points, process seeds) is drawn exactly as `nengo.Simulator` draws it.
What Spike adds is bookkeeping: for every operator, the outermost Nengo object whose
build added it (an Ensemble, a Node, a Connection, a Probe). Placement uses it to map
``assignments={object: worker}`` onto operators and to describe actors to the user.
"""

import contextlib

from nengo.base import NengoObject
from nengo.builder import Model
from nengo.cache import get_default_decoder_cache
from nengo.network import Network


def make_model(network, dt):
    """A fresh `nengo.builder.Model` configured as `nengo.Simulator` would make it."""
    return Model(
        dt=float(dt),
        label=f"{network}, dt={dt:f}",
        decoder_cache=get_default_decoder_cache(),
    )


@contextlib.contextmanager
def recording_owners(model):
    """Record, for each operator added to ``model`` inside the block, its owner.

    The owner is the outermost non-Network `NengoObject` being built when the operator
    was added. The mapping ``{operator: owner}`` is stored as ``model.spike_op_owner``
    (kept across several builds into the same model). Operators added outside any
    object's build (such as the model's own ``TimeUpdate``) have no entry.
    """
    owners = getattr(model, "spike_op_owner", None)
    if owners is None:
        owners = {}
        model.spike_op_owner = owners
    stack = []
    class_build = type(model).build
    class_add_op = type(model).add_op

    def build(obj, *args, **kwargs):
        is_object = isinstance(obj, NengoObject) and not isinstance(obj, Network)
        if is_object:
            stack.append(obj)
        try:
            return class_build(model, obj, *args, **kwargs)
        finally:
            if is_object:
                stack.pop()

    def add_op(op):
        if stack:
            owners[op] = stack[0]
        return class_add_op(model, op)

    model.build = build
    model.add_op = add_op
    try:
        yield owners
    finally:
        del model.build
        del model.add_op


def describe_op(op, owners):
    """How an operator is named in a reason for not splitting or dividing: its type and
    the object whose build made it (``owners``, see `recording_owners`), else nengo's
    own description of the operator."""
    owner = owners.get(op)
    return f"{type(op).__name__} of {owner}" if owner is not None else str(op)
