"""From a network to actors: nengo's build, splitting, division, and the partition.

`prepare` is the one path every caller takes (`spike.Simulator`, the dry run, the
bench and the tests): build with owners recorded, split large ensembles, divide
actors held together by passthrough Nodes, and partition into actors.
"""

import contextlib
from dataclasses import dataclass

from spike.builder.model import make_model, recording_owners
from spike.builder.order import step_order
from spike.builder.partition import partition_model
from spike.builder.passthrough import divide_actors
from spike.builder.split import split_ensembles


@dataclass
class Prepared:
    """A built model divided into actors: what placement and planning start from.

    Attributes
    ----------
    model : nengo.builder.Model
        Built by nengo, with Spike's bookkeeping (``spike_op_owner``,
        ``spike_split``, ``spike_rng_order``).
    split : SplitReport
        Which ensembles were split and which actors divided (`spike.builder.split`).
    partition : Partition
        The model's actors (`spike.builder.partition`).
    """

    model: object
    split: object
    partition: object

    def redivide(self, n_groups):
        """Divide into at most ``n_groups`` groups instead (see `redivide`), and
        partition again. Needs ``prepare(..., undoable=True)``."""
        redivide(self.model, n_groups)
        self.partition = partition_model(self.model, self.split)

    def forget_division(self):
        """Drop what `redivide` needs (it is neither kept nor pickled)."""
        self.split.before_division = None


def prepare(network, dt=0.001, model=None, max_neurons=None, n_groups=None,
            undoable=False, progress=None):
    """Build ``network`` with nengo's builder and divide it into actors.

    Parameters
    ----------
    network : nengo.Network or None
        None: ``model`` is already built (a pickled Simulator's).
    dt : float, optional
    model : nengo.builder.Model, optional
        A model to build into (default: a new one, as `nengo.Simulator` makes it).
    max_neurons : int, optional
        Split ensembles of more neurons (`spike.builder.split`).
    n_groups : int, optional
        Most groups an actor held together by passthrough Nodes is divided into
        (`spike.builder.passthrough`); None: not divided.
    undoable : bool, optional
        Keep what `Prepared.redivide` needs (for choosing the number of workers
        after the partition).
    progress : nengo.utils.progress.ProgressTracker, optional
        Stages ``Building`` and ``Dividing into actors`` are reported to it.

    Returns
    -------
    Prepared
    """
    model = make_model(network, dt) if model is None else model
    if network is not None:
        with recording_owners(model):
            if progress is None:
                model.build(network)
            else:
                model.build(network, progress=progress.next_stage("Building", "Build"))
    stage = (contextlib.nullcontext() if progress is None
             else progress.next_stage("Dividing into actors", "Division"))
    with stage:
        split = split_model(model, max_neurons, n_groups, undoable=undoable)
        partition = partition_model(model, split)
    return Prepared(model, split, partition)


def split_model(model, max_neurons=None, n_groups=None, undoable=False):
    """Split ``model``'s large ensembles, and divide its actors held together by
    passthrough Nodes into up to ``n_groups`` groups (`spike.builder.passthrough`), once;
    return its `SplitReport`.

    The report is kept on the model (``model.spike_split``), so a model that was
    split (a pickled Simulator's) is not split again. Before splitting, the model's
    step order is kept as ``model.spike_rng_order``: random states are drawn in the
    order nengo built, and `spike.runtime.rng` replays them in it. With ``undoable=True``
    the report keeps what `redivide` needs to divide into fewer groups.
    """
    report = getattr(model, "spike_split", None)
    if report is None:
        model.spike_rng_order = step_order(model)
        report = split_ensembles(model, max_neurons)
        if undoable:
            report.before_division = (
                list(model.operators),
                dict(report.probes),
                dict(report.part_of_op),
                dict(getattr(model, "spike_op_owner", {})),
            )
        divide_actors(model, n_groups, report)
        model.spike_split = report
    return report


def redivide(model, n_groups):
    """Divide ``model``'s actors into at most ``n_groups`` groups instead of the
    number `split_model` (with ``undoable=True``) used: for when fewer workers were
    chosen than there are groups, which would each compute their inputs again on
    one worker. Returns the report."""
    report = model.spike_split
    operators, probes, part_of_op, owners = report.before_division
    model.operators[:] = operators
    report.probes, report.part_of_op = dict(probes), dict(part_of_op)
    if hasattr(model, "spike_op_owner"):
        model.spike_op_owner.clear()
        model.spike_op_owner.update(owners)
    report.divisions, report.undivided, report.group_of_op = [], {}, {}
    divide_actors(model, n_groups, report)
    return report
