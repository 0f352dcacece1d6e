"""`spike.Simulator`: nengo.Simulator's interface, running on worker processes."""

import logging
import warnings
import weakref

import nengo.utils.numpy as npext
import numpy as np
from nengo.exceptions import ReadonlyError, SimulatorClosed, ValidationError
from nengo.simulator import SimulationData
from nengo.utils.progress import Progress, ProgressTracker

from spike import config
from spike.builder.order import model_step_order
from spike.builder.pipeline import prepare
from spike.client.assemble import probe_samples, whole_signals
from spike.client.pool import get_pool
from spike.client.session import Session
from spike.cluster.hostpool import HostPool, check_on_unreachable
from spike.cluster.ssh import SSHHostPool
from spike.exceptions import SpikeError
from spike.plan import allocation as allocation_file
from spike.plan.calibration import machine_calibration
from spike.plan.pipeline import max_local_workers, plan_model
from spike.plan.placement import CLIENT

logger = logging.getLogger(__name__)


def default_workers():
    """``SPIKE_WORKERS`` if set, else None: chosen per model (see `spike.plan.pipeline.choose_workers`)."""
    return config.get("SPIKE_WORKERS")


def default_compile():
    """``"auto"`` unless ``SPIKE_COMPILE`` says ``0``/``1``/``auto``."""
    return config.get("SPIKE_COMPILE")


class Simulator:
    """Run a Nengo model on worker processes, with the results of `nengo.Simulator`.

    The model is built once in the client with nengo's own builder, divided into
    actors (groups of operators that exchange values within a step), placed on
    workers, and run there. Values that cross workers travel once per step per pair
    of workers; Nodes that call Python functions run in this process.

    Parameters
    ----------
    network : Network or None
        The network to simulate. If None, ``model`` must hold a built model.
    dt : float, optional
        Time step in seconds.
    seed : int, optional
        Seed for stochastic operators (processes, noise); ``network.seed + 1`` if
        not given, as in `nengo.Simulator`.
    model : Model, optional
        A `nengo.builder.Model` to build into (or an already built one).
    progress_bar : bool or ProgressBar, optional
        Progress bar for building and running (nengo's).
    optimize : bool, optional
        If True, each worker (and the client) merges the operators of its share with
        nengo's op-merging optimizer, as `nengo.Simulator` does for the whole model.
    workers : int, optional
        Number of local worker processes. By default (or the ``SPIKE_WORKERS``
        environment variable) Spike chooses, from one to one per core: the count
        with the shortest estimated step, compute shared among workers plus the
        cost of exchanging values (measured by ``spike dry-run`` on this machine;
        defaults otherwise), so a small model is not spread thinner than pays.
    assignments : dict, optional
        ``{nengo_object: worker_index}`` to place objects by hand (a Network places
        all its objects; ``"client"`` keeps an object in this process). Objects that
        are not named are placed by Spike.
    compile : bool or "auto", optional
        Compile each worker's step with PyTensor (Numba). ``"auto"`` (default)
        compiles a worker's share when it holds at least
        `spike.runtime.compiler.COMPILE_MIN_NEURONS` neurons. Operators without a compiled
        form (Python functions, noise processes) run in Python between compiled
        parts. The ``SPIKE_COMPILE`` environment variable (``0``/``1``/``auto``)
        sets the default.
    dtype : str, optional
        ``"float64"`` (default, same results as nengo) or ``"float32"``: compiled
        products hold their matrices in float32, halving the memory they read
        per step; state stays float64. Results then differ from nengo's by float32
        rounding.
    max_neurons : int, optional
        Ensembles with more neurons are split into ``ceil(n / max_neurons)``
        sub-ensembles of (nearly) equal size, each placed on its own (see
        `spike.builder.split`): same results, up to the order of sums. An ensemble that
        cannot be divided exactly stays whole, with a warning saying why.
    allocation : str, optional
        An allocation file from ``spike dry-run`` or ``spike rebalance``: which
        worker runs each actor (see `spike.plan.allocation`). It sets the number of
        workers, ``max_neurons`` and the groups actors are divided into; a file
        made for another model (or before an object changed) is refused with
        `spike.plan.allocation.AllocationError`.
    hosts : str or list, optional
        Run the workers on other hosts: a hostfile (``host[:port] slots=N`` lines,
        see `spike.cluster.hostfile`) or a list of such lines. Each host's ``spike-daemon``
        starts the workers; ``workers`` then defaults to all the hosts' slots.
    ssh : bool, optional
        Start the daemons over SSH for this Simulator and stop them at close
        (see `spike.cluster.ssh`); otherwise they must be running already.
    on_unreachable : {"error", "skip"}, optional
        A host that is down, unreachable, busy or refuses our key raises
        `spike.HostError` (``"error"``, the default) or is left out (``"skip"``).
    keys : str, optional
        Key directory (see `spike.cluster.keys`; default ``~/.config/spike/keys``).

    Attributes
    ----------
    closed : bool
    data : SimulationData
        Probe data and built parameters, as in `nengo.Simulator`.
    model : Model
    partition : Partition
        The model's actors (see `spike.builder.partition`).
    split : SplitReport
        Which ensembles were split, and which could not be (see `spike.builder.split`);
        which actors held together by passthrough Nodes were divided into groups
        of ensembles, one per worker, and which could not be (``divisions``,
        ``undivided``; see `spike.builder.passthrough`).
    placement : dict
        ``{actor index: peer}``; peer 0 is the client, ``k + 1`` is worker ``k``.
    """

    def __init__(
        self,
        network,
        dt=0.001,
        seed=None,
        model=None,
        progress_bar=True,
        optimize=True,
        workers=None,
        assignments=None,
        compile=None,
        dtype="float64",
        max_neurons=None,
        allocation=None,
        hosts=None,
        ssh=False,
        on_unreachable="error",
        keys=None,
    ):
        self.closed = True  # until construction succeeds
        self._session = None
        self._pool = None
        self.hosts = hosts
        self.ssh = ssh
        self.on_unreachable = on_unreachable
        self.keys = keys
        self.progress_bar = progress_bar
        self.optimize = optimize
        self.compile = default_compile() if compile is None else compile
        if self.compile not in (True, False, "auto"):
            raise ValidationError(
                f"must be True, False or 'auto' (got {self.compile!r})",
                attr="compile",
                obj=self,
            )
        if np.dtype(dtype) not in (np.float64, np.float32):
            raise ValidationError(
                f"must be 'float64' or 'float32' (got {dtype!r})", attr="dtype", obj=self
            )
        self.dtype = np.dtype(dtype).name
        check_on_unreachable(on_unreachable, obj=self)
        self.allocation = None
        if allocation is not None:
            self.allocation, max_neurons = self._load_allocation(
                allocation, workers, max_neurons, assignments
            )
            workers = self.allocation["machines"] * self.allocation["workers_per_machine"]
        if hosts is None:
            self.n_workers = default_workers() if workers is None else int(workers)
        else:
            self.n_workers = None if workers is None else int(workers)
        if self.n_workers is not None and self.n_workers < 1:
            raise ValidationError("must be at least 1", attr="workers", obj=self)
        if hosts is None:
            # local workers start (and import the compiler) while the model builds
            get_pool().prestart(
                self.n_workers or max_local_workers(), preload=self.compile is not False
            )

        try:
            self._construct(
                network, dt, model, progress_bar, optimize, assignments, max_neurons,
                allocation,
            )
        except BaseException:
            if self._pool is not None and self._session is None:
                self._pool.shutdown()
            raise
        self._finalizer = weakref.finalize(self, _close, self._session, self._pool)

        self._sim_data = self.model.params
        self.data = SimulationData(self._sim_data)
        if seed is None:
            if network is not None and network.seed is not None:
                seed = network.seed + 1
            else:
                seed = np.random.randint(npext.maxint)
        self.closed = False
        self.reset(seed=seed)

    def _construct(
        self, network, dt, model, progress_bar, optimize, assignments, max_neurons,
        allocation,
    ):
        progress = ProgressTracker(progress_bar, Progress("Building", "Build"))
        with progress:
            if self.hosts is not None:  # reachable hosts first: fail before a long build
                with progress.next_stage("Connecting to hosts", "Connection"):
                    self._pool = open_host_pool(
                        self.hosts, self.ssh, self.on_unreachable, self.keys
                    )
                    if self.n_workers is None:
                        self.n_workers = self._pool.total_slots
                    self._pool.check_workers(self.n_workers)
            prepared = prepare(
                network, dt, model, max_neurons, n_groups=self._groups(),
                undoable=self.n_workers is None, progress=progress,
            )
            self.model, self.split = prepared.model, prepared.split
            self.max_neurons = max_neurons
            self._step_order = None  # computed when asked for (`step_order`)
            with progress.next_stage("Placing on workers", "Placement"):
                layout = plan_model(
                    prepared, self.n_workers, assignments, allocation=self.allocation,
                    allocation_path=allocation, optimize=optimize, compile=self.compile,
                    dtype=self.dtype, calibration=machine_calibration(),
                )
            self.partition = prepared.partition
            self.n_workers = layout.n_workers
            self.placement = dict(enumerate(layout.peers))
            self._probe_records = layout.probe_records
            with progress.next_stage("Starting workers", "Start-up"):
                self._session = Session(
                    layout.plans,
                    self.model.spike_rng_order,
                    get_pool() if self._pool is None else self._pool,
                    getattr(self.model, "spike_op_owner", {}),
                )

    def _groups(self):
        """Most groups an actor held together by passthrough Nodes is divided into
        (`spike.builder.passthrough`): one per worker (per core when Spike chooses the
        number of workers), or what the allocation file was made with."""
        if self.allocation is not None:
            return self.allocation["model"].get("groups")
        return self.n_workers or max_local_workers()

    @staticmethod
    def _load_allocation(path, workers, max_neurons, assignments):
        data = allocation_file.load(path)
        wanted = data["machines"] * data["workers_per_machine"]
        if workers is not None and int(workers) != wanted:
            raise ValidationError(
                f"{path} allocates {wanted} workers, but workers={workers}",
                attr="workers",
            )
        made_with = data["model"].get("max_neurons")
        if max_neurons is not None and max_neurons != made_with:
            raise ValidationError(
                f"{path} was made with max_neurons={made_with}, not {max_neurons}",
                attr="max_neurons",
            )
        if assignments:
            raise ValidationError(
                "give either an allocation file or assignments, not both",
                attr="assignments",
            )
        return data, made_with

    def __del__(self):
        if not getattr(self, "closed", True):
            warnings.warn(
                f"Simulator with model={self.model} was deallocated while open. Please "
                "close simulators manually to ensure resources are properly freed.",
                ResourceWarning,
            )

    def __getstate__(self):
        signals = {}
        if not self.closed:
            signals = {k: v for k, v in self._session.gather_signals().items() if not k.readonly}
        return {
            "model": self.model,
            "signals": signals,
            "n_steps": self._n_steps,
            "probe_outputs": {p: self._sim_data[p] for p in self.model.probes},
            "dt": self.dt,
            "seed": self.seed,
            "progress_bar": self.progress_bar,
            "optimize": self.optimize,
            "compile": self.compile,
            "dtype": self.dtype,
            "workers": self.n_workers,
            "max_neurons": self.max_neurons,
            "closed": self.closed,
            "hosts": self.hosts,
            "ssh": self.ssh,
            "on_unreachable": self.on_unreachable,
            "keys": self.keys,
        }

    def __setstate__(self, state):
        self.__init__(
            network=None,
            model=state["model"],
            dt=state["dt"],
            seed=state["seed"],
            progress_bar=state["progress_bar"],
            optimize=state["optimize"],
            workers=state["workers"],
            compile=state["compile"],
            dtype=state["dtype"],
            max_neurons=state.get("max_neurons"),
            hosts=state.get("hosts"),
            ssh=state.get("ssh", False),
            on_unreachable=state.get("on_unreachable", "error"),
            keys=state.get("keys"),
        )
        if state["signals"]:
            self._session.restore(state["signals"], state["n_steps"])
            self._set_steps(state["n_steps"])
        for probe, samples in state["probe_outputs"].items():
            self._sim_data[probe].extend(samples)
        if state["closed"]:
            self.close()

    @property
    def signals(self):
        """A snapshot of every signal's current value, gathered from the workers.

        A `nengo.builder.signal.SignalDict` (base signals; views resolve through
        their base). Changing it does not change the simulation. None once closed.
        """
        if self.closed:
            return None
        return whole_signals(self._session.gather_signals(), self.split)

    def __enter__(self):
        if self.closed:
            raise SimulatorClosed("Cannot re-open after simulator is closed")
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    @property
    def dt(self):
        """(float) The time step of the simulator."""
        return self.model.dt

    @dt.setter
    def dt(self, dummy):
        raise ReadonlyError(attr="dt", obj=self)

    @property
    def n_steps(self):
        """(int) The current time step of the simulator."""
        return self._n_steps

    @property
    def time(self):
        """(float) The current time of the simulator."""
        return self._time

    @property
    def step_order(self):
        """(list) All operators of the model, in the order of one step."""
        if self._step_order is None:
            self._step_order = model_step_order(self.model)
        return self._step_order

    @property
    def workers(self):
        """Names of the worker processes running this simulation."""
        return [] if self._session is None else self._session.workers

    @property
    def step_timings(self):
        """Where each worker's time went since the last reset, as measured by the
        worker: ``{name: StepTiming}`` with seconds spent computing, waiting for the
        values of other workers, and sending (see `spike.runtime.executor.StepTiming`);
        ``"client"`` too if this process runs operators (Nodes with functions)."""
        return {} if self._session is None else self._session.step_timings()

    def _set_steps(self, n_steps):
        # the same arithmetic as nengo's TimeUpdate: int64 step times float dt
        step = np.int64(n_steps)
        self._n_steps = int(step)
        self._time = float(step * self.dt)

    def clear_probes(self):
        """Clear all probe histories."""
        for probe in self.model.probes:
            self._sim_data[probe] = []
        self.data.reset()

    def close(self):
        """Close the simulator and give its workers back to the pool.

        Any later call to `run`, `run_steps`, `step` or `reset` raises
        `nengo.exceptions.SimulatorClosed`. Probe data stay readable.
        """
        self.closed = True
        if self._session is not None:
            self._finalizer()

    def reset(self, seed=None):
        """Reset the simulator state (and, if given, the seed of stochastic ops)."""
        if self.closed:
            raise SimulatorClosed("Cannot reset closed Simulator.")
        if seed is not None:
            self.seed = seed
        self._session.reset(self.seed)
        self.clear_probes()
        self._set_steps(0)

    def run(self, time_in_seconds, progress_bar=None):
        """Simulate for ``time_in_seconds`` (rounded to a whole number of steps)."""
        if time_in_seconds < 0:
            raise ValidationError(
                f"Must be positive (got {time_in_seconds:g})", attr="time_in_seconds"
            )
        steps = int(np.round(float(time_in_seconds) / self.dt))
        if steps == 0:
            warnings.warn(
                f"{time_in_seconds} results in running for 0 timesteps. Simulator "
                f"still at time {self.time}."
            )
        else:
            logger.info(
                "Running %s for %f seconds, or %d steps",
                self.model.label, time_in_seconds, steps,
            )
            self.run_steps(steps, progress_bar=progress_bar)

    def run_steps(self, steps, progress_bar=None):
        """Simulate for ``steps`` time steps."""
        if self.closed:
            raise SimulatorClosed("Simulator cannot run because it is closed.")
        if progress_bar is None:
            progress_bar = self.progress_bar
        with ProgressTracker(
            progress_bar, Progress("Simulating", "Simulation", steps)
        ) as tracker:
            self._session.run(steps, progress=tracker.total_progress.step)
        self._collect_probes()
        self._set_steps(self._n_steps + steps)

    def step(self):
        """Advance the simulator by one step (``dt`` seconds)."""
        self.run_steps(1, progress_bar=False)

    def _collect_probes(self):
        records = self._session.take_probe_data()
        samples = probe_samples(
            records, self.model.probes, self._probe_records, self.split.probes
        )
        for probe, recorded in samples.items():
            self._sim_data[probe].extend(recorded)

    def trange(self, dt=None, sample_every=None):
        """Times of the probed samples (starting at ``dt``, not 0)."""
        if dt is not None:
            if sample_every is not None:
                raise ValidationError(
                    "Cannot specify both `dt` and `sample_every`. "
                    "Use `sample_every` only.",
                    attr="dt",
                    obj=self,
                )
            warnings.warn(
                "`dt` is deprecated. Use `sample_every` instead.", DeprecationWarning
            )
            sample_every = dt
        period = 1 if sample_every is None else sample_every / self.dt
        steps = np.arange(1, self.n_steps + 1)
        return self.dt * steps[steps % period < 1]

    def describe_placement(self):
        """A human-readable table of which actor runs where."""
        lines = []
        names = {CLIENT: "client"}
        for peer in range(1, self.n_workers + 1):
            names[peer] = f"worker {peer - 1}"
        for actor in self.partition.actors:
            peer = self.placement[actor.index]
            lines.append(
                f"{names[peer]:>10}  {actor.n_neurons:7d} neurons  {actor.label}"
            )
        return "\n".join(lines)


def open_host_pool(hosts, ssh, on_unreachable, keys):
    """The `spike.cluster.hostpool.HostPool` of a Simulator given ``hosts``."""
    if ssh:
        return SSHHostPool(hosts, keys_dir=keys, on_unreachable=on_unreachable)
    return HostPool(hosts, keys_dir=keys, on_unreachable=on_unreachable)


def _close(session, pool):
    """Close a Simulator's session, and its own host pool if it has one."""
    try:
        session.close()
    finally:
        if pool is not None:
            pool.shutdown()


__all__ = ["Simulator", "SpikeError"]
