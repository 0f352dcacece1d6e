"""Compiled workers (PyTensor + Numba) give the reference's answers.

The equivalence models of test_equivalence run again with ``compile=True``; other
tests check, in this process, that the operators were really compiled (so a test
cannot pass by falling back to Python), that each kernel matches nengo's numpy step
bit for bit, and that the cache lives where Spike says.
"""

import os
import pickle
import subprocess
import sys

import nengo
import numpy as np
import pytest
from conftest import assert_equivalent, assert_same_probes, run_reference, run_spike
from models import MODELS, NEURON_TYPES, neuron_type_chain

import spike
from spike.builder.model import make_model
from spike.builder.pipeline import prepare
from spike.plan.pipeline import plan_model
from spike.runtime import compiler
from spike.runtime.compiler import processes, ufuncs
from spike.runtime.executor import Executor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(
    not compiler.available(), reason="PyTensor/Numba not installed"
)

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_match_reference_compiled(name):
    assert_equivalent(MODELS[name](seed=3), steps=200, workers=2, compile=True)


@pytest.mark.slow
@pytest.mark.parametrize("neuron_type", NEURON_TYPES, ids=lambda n: type(n).__name__)
def test_neuron_types_match_reference_compiled(neuron_type):
    net = neuron_type_chain(neuron_type, seed=5)
    assert_equivalent(net, steps=200, workers=2, compile=True)


def compiled_executor(net, optimize=True, matrix_dtype="float64"):
    """The single worker's Executor for ``net``, built in this process."""
    plans = plan_model(
        prepare(net), 1, optimize=optimize, compile=True, dtype=matrix_dtype
    ).plans
    return Executor(plans[1])


def python_ops(executor):
    return [
        type(executor.plan.ops[item]).__name__
        for item in executor.program.items
        if isinstance(item, int)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("optimize", [True, False])
def test_everything_is_compiled(optimize):
    """Synapses of every kind, neurons, products, copies, learning, a white signal,
    white noise (run ahead): all compiled; a Python function runs in Python."""
    with nengo.Network(seed=2) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=1), size_out=2)
        noise = nengo.Node(nengo.processes.WhiteNoise(seed=3), size_out=2)
        a = nengo.Ensemble(100, 2)
        nengo.Connection(noise, a, transform=0.1)
        b = nengo.Ensemble(80, 2, neuron_type=nengo.AdaptiveLIF())
        c = nengo.Ensemble(60, 2, neuron_type=nengo.Izhikevich())
        nengo.Connection(stim, a)
        nengo.Connection(a, b, synapse=nengo.Alpha(0.01))
        nengo.Connection(b, c, synapse=nengo.LinearFilter([1], [0.001, 0.05, 1]))
        nengo.Connection(a, c, synapse=None, transform=0.5)
        conn = nengo.Connection(
            a, b, learning_rule_type=nengo.PES(), function=lambda x: [0, 0]
        )
        nengo.Connection(c, conn.learning_rule)
        nengo.Probe(b, synapse=0.01)
        clock = nengo.Node(nengo.processes.Piecewise({0: lambda t: [t]}))
        nengo.Connection(clock, c[0])
    executor = compiled_executor(net, optimize=optimize)
    assert executor.program.n_compiled > 0
    assert python_ops(executor) == ["SimProcess"]  # the Piecewise of a function
    assert_equivalent(net, steps=200, workers=1, compile=True, optimize=optimize)


@pytest.mark.slow
def test_processes_of_the_time_are_compiled_tables(monkeypatch):
    """WhiteSignal (one period drawn at each reset, from the operator's random
    state), PresentInput and Piecewise (its default, zero interpolation) are compiled
    as tables indexed by the time: the same values as nengo's, past the end of a
    period, after a reset too."""
    inputs = np.arange(12.0).reshape(4, 3) / 7
    steps = {0.0504: [1, 0, 2], 0.1: [3, 0, 0], 0.2005: [-1, 0.5, 0.25], 0.3: [0, 0, 1]}
    with nengo.Network(seed=3) as net:
        short = nengo.Node(nengo.processes.WhiteSignal(0.1, high=20, rms=0.4), size_out=3)
        shifted = nengo.Node(nengo.processes.WhiteSignal(0.2, high=10, y0=0.1), size_out=2)
        present = nengo.Node(nengo.processes.PresentInput(inputs, presentation_time=0.0133))
        piecewise = nengo.Node(nengo.processes.Piecewise(steps))
        ens = nengo.Ensemble(200, 3)
        for node in (short, present, piecewise):
            nengo.Connection(node, ens)
        nengo.Connection(shifted, ens[:2], transform=-1)
        for node in (short, shifted, present, piecewise):
            nengo.Probe(node)
        nengo.Probe(ens.neurons)
    assert "SimProcess" not in python_ops(compiled_executor(net))
    with monkeypatch.context() as patch:  # were nengo's period ever other than expected
        rows = processes.white_signal_rows
        patch.setattr(processes, "white_signal_rows", lambda *args: rows(*args) + 2)
        assert python_ops(compiled_executor(net)).count("SimProcess") == 2
    # three and a half periods of ``short``; then another seed: ``short`` draws
    # another signal, so its table is refilled
    assert_same_before_and_after_reset(net, [350], seed=7, after=350)


def assert_same_before_and_after_reset(net, runs, seed, after):
    """nengo and Spike (two compiled workers) give the same probe data after runs
    of ``runs`` steps, and again after a reset with ``seed`` and ``after`` steps."""
    with nengo.Simulator(net, progress_bar=False) as ref:
        ref.run_steps(sum(runs))
        with spike.Simulator(net, workers=2, compile=True, progress_bar=False) as sim:
            for steps in runs:
                sim.run_steps(steps)
            assert_same_probes(net, ref, sim)
            sim.reset(seed=seed)
            ref.reset(seed=seed)
            ref.run_steps(after)
            sim.run_steps(after)
            assert_same_probes(net, ref, sim)


def noisy_network(seed=4, piecewise=True):
    """Every process run ahead: the noises, on Nodes and on neurons (white and
    filtered ones of Gaussian and uniform distributions, drawn many steps at once,
    the filters compiled; white and filtered ones of another distribution, nengo's
    steps called, the filter's state kept per step), a linear Piecewise (which
    nengo cannot pickle); tables of 16 to 32 rows. Each noise has its own seed: nengo seeds the others from one
    random state in its step order, which may differ between two builds of a
    network in one Python process (two ops independent of each other)."""
    with nengo.Network(seed=seed) as net:
        white = nengo.Node(nengo.processes.WhiteNoise(seed=3), size_out=2)
        uniform = nengo.Node(nengo.processes.WhiteNoise(
            nengo.dists.Uniform(-0.3, 0.4), scale=False, seed=8
        ), size_out=2)
        choice = nengo.Node(nengo.processes.WhiteNoise(
            nengo.dists.Choice([[-0.5], [0.25], [1.0]]), seed=9
        ), size_out=1)
        filtered = nengo.Node(
            nengo.processes.FilteredNoise(synapse=nengo.Alpha(0.01), seed=4), size_out=3
        )
        brown = nengo.Node(nengo.processes.BrownNoise(seed=5), size_out=1)
        chosen = nengo.Node(nengo.processes.FilteredNoise(
            nengo.Alpha(0.005), nengo.dists.Choice([[-1.0], [0.5]]), seed=10
        ), size_out=1)
        linear = nengo.Node(nengo.processes.Piecewise(
            {0: [0, 1], 0.1: [1, -1], 0.25: [0.5, 0]},
            interpolation="linear" if piecewise else "zero",
        ))
        a = nengo.Ensemble(
            300, 2, noise=nengo.processes.WhiteNoise(nengo.dists.Gaussian(0, 0.05), seed=6)
        )
        b = nengo.Ensemble(
            2000, 3,
            noise=nengo.processes.FilteredNoise(dist=nengo.dists.Gaussian(0, 0.1), seed=7),
        )
        nengo.Connection(white, a, transform=0.1)
        nengo.Connection(uniform, a)
        nengo.Connection(choice, a[0], transform=0.01)
        nengo.Connection(linear, a)
        nengo.Connection(filtered, b, transform=0.1)
        nengo.Connection(brown, b[0])
        nengo.Connection(chosen, b[1], transform=0.1)
        nengo.Connection(a, b[:2])
        for node in (white, uniform, choice, filtered, brown, chosen, linear):
            nengo.Probe(node)
        nengo.Probe(a.neurons)
        nengo.Probe(b, synapse=0.01)
    return net


@pytest.mark.slow
def test_noise_runs_ahead_compiled():
    """Processes that draw random numbers at every step, or are costly functions of
    the time, are compiled as tables filled ahead by nengo's own steps: the same
    numbers as nengo's, across runs that end inside a window, after a reset with
    another seed, and where a window ends on every worker."""
    net = noisy_network()
    executor = compiled_executor(net)
    assert "SimProcess" not in python_ops(executor)
    rows = {
        table.shape[0] for item in executor.program.items
        if isinstance(item, compiler.Segment) for _, table, _ in item.ahead_tables()
    }
    assert rows == {16, 32}  # b's 2000 neurons: 16 rows; the others: at most 32
    executor.reset({})
    (run_ahead,) = executor.run_ahead
    batched = [isinstance(entry, processes._DrawnAhead) for entry in run_ahead.entries]
    assert sorted(batched) == [False] * 3 + [True] * 6  # Choice's, Piecewise: not
    # runs that end inside windows of 16 and 32 rows
    assert_same_before_and_after_reset(net, [13, 32, 1, 255], seed=9, after=100)


@pytest.mark.slow
def test_noise_run_ahead_pickles_as_nengo():
    """A pickled Simulator continues as nengo's does: the filtered noises' states
    from the pickle (not from further ahead), the random numbers from a fresh
    state."""
    net = noisy_network(seed=6, piecewise=False)

    def pickled_run(simulator, **kwargs):
        with simulator(net, progress_bar=False, **kwargs) as sim:
            sim.run_steps(70)  # inside a window of 32 rows (and of 16)
            clone = pickle.loads(pickle.dumps(sim))
        with clone:
            clone.run_steps(50)
            return [clone.data[probe] for probe in clone.model.probes]

    expected = pickled_run(nengo.Simulator)
    actual = pickled_run(spike.Simulator, workers=2, compile=True)
    for mine, theirs in zip(actual, expected):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_white_signal_of_a_long_period_runs_ahead(monkeypatch):
    """A WhiteSignal whose period is too long for a table is run ahead instead."""
    monkeypatch.setattr(processes, "MAX_TABLE_ROWS", 100)
    with nengo.Network(seed=2) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(0.5, high=10), size_out=2)
        nengo.Probe(stim)
    executor = compiled_executor(net)
    assert "SimProcess" not in python_ops(executor)
    (segment,) = [i for i in executor.program.items if isinstance(i, compiler.Segment)]
    assert [table.shape for _, table, _ in segment.ahead_tables()] == [(32, 2)]
    assert not segment.reset_tables()
    assert_equivalent(net, steps=700, workers=1, compile=True)


@pytest.mark.slow
def test_lif_kernel_is_bit_exact():
    """Spiking is decided by the last bit: the LIF kernel must match numpy's step."""
    with nengo.Network(seed=4) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=8, seed=2), size_out=3)
        ens = nengo.Ensemble(3000, 3)
        nengo.Connection(stim, ens)
        nengo.Probe(ens.neurons, "voltage")
        nengo.Probe(ens.neurons)
        nengo.Probe(ens, synapse=0.01)
    ref = run_reference(net, 300)
    sim = run_spike(net, 300, workers=1, compile=True)
    for probe in net.all_probes:
        np.testing.assert_array_equal(sim.data[probe], ref.data[probe], err_msg=str(probe))


@pytest.mark.parametrize("name", ufuncs.UFUNCS)
def test_compiled_code_calls_numpys_own_loops(name):
    """`spike.runtime.compiler.ufuncs.call` gives numpy's bits (SIMD where numpy's
    math is SIMD), for every position of an argument in its array."""
    from pytensor.link.numba.dispatch.basic import numba_njit

    k = ufuncs.UFUNCS.index(name)
    call = ufuncs.call

    @numba_njit(final_function=True)  # called from Python
    def apply(table, x, out, n):
        call(table, k, x, out, n)

    rng = np.random.RandomState(k)
    x = rng.uniform(*ufuncs._SAMPLES[name], 100_003)
    reference = getattr(np, name)(x)
    for n in (1, 7, 8, 9, 1000, x.size):  # tails of every length
        out = np.full(n, np.nan)
        apply(ufuncs.loop_table(), x[:n].copy(), out, n)
        np.testing.assert_array_equal(out, reference[:n])


@pytest.mark.slow
def test_lif_kernel_gives_nengos_bits_for_many_spikes():
    """A large LIF population driven hard (many spikes, many neurons part-way out
    of their refractory period every step): voltages, refractory times and spikes
    are nengo's to the last bit after every step. Where numpy's expm1/log1p are SIMD
    versions, libm's differ in the last bit for some arguments, and this fails
    unless the kernel uses numpy's loops."""
    with nengo.Network(seed=11) as net:
        stim = nengo.Node(lambda t: [np.sin(40 * t), np.cos(33 * t)])
        ens = nengo.Ensemble(3000, 2, max_rates=nengo.dists.Uniform(200, 400))
        nengo.Connection(stim, ens, synapse=None)
        probes = [nengo.Probe(ens.neurons), nengo.Probe(ens.neurons, "voltage"),
                  nengo.Probe(ens.neurons, "refractory_time")]
    ref = run_reference(net, 200)
    sim = run_spike(net, 200, workers=1, compile=True)
    assert "SimNeurons" not in python_ops(compiled_executor(net))
    for probe in probes:
        np.testing.assert_array_equal(sim.data[probe], ref.data[probe], err_msg=str(probe))
    assert ref.data[probes[0]].any()


@pytest.mark.slow
def test_lif_left_to_nengo_where_numpys_loops_cannot_be_called(monkeypatch):
    """If numpy's loops cannot be found or do not give numpy's results, LIF neurons
    run nengo's own step (the same bits, at Python's speed)."""
    with nengo.Network(seed=2) as net:
        stim = nengo.Node([0.5, -0.3])
        ens = nengo.Ensemble(50, 2)
        nengo.Connection(stim, ens)
        nengo.Probe(ens.neurons)
    assert "SimNeurons" not in python_ops(compiled_executor(net))

    def unavailable():
        raise ufuncs.LoopsUnavailable("pretended")

    monkeypatch.setattr(ufuncs, "loop_table", unavailable)
    assert "SimNeurons" in python_ops(compiled_executor(net))


@pytest.mark.slow
def test_sparse_transform_compiled():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with nengo.Network(seed=6) as net:
        stim = nengo.Node(np.sin)
        a = nengo.Ensemble(50, 1)
        b = nengo.Ensemble(40, 1)
        nengo.Connection(stim, a)
        matrix = scipy_sparse.random(40, 50, density=0.2, random_state=1, format="csr")
        nengo.Connection(
            a.neurons, b.neurons, transform=nengo.transforms.Sparse((40, 50), init=matrix)
        )
        nengo.Probe(b.neurons)
        nengo.Probe(b, synapse=0.01)
    executor = compiled_executor(net)
    assert "SparseDotInc" not in python_ops(executor)
    assert_equivalent(net, steps=200, workers=2, compile=True)


@pytest.mark.slow
def test_float32_matrices_stay_close():
    """``dtype="float32"`` halves matrix traffic and stays close to float64."""
    with nengo.Network(seed=1) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=3, seed=5), size_out=4)
        a = nengo.Ensemble(400, 4)
        b = nengo.Ensemble(400, 4)
        nengo.Connection(stim, a)
        nengo.Connection(a, b)
        probe = nengo.Probe(b, synapse=0.03)
    executor = compiled_executor(net, matrix_dtype="float32")
    assert any(
        flat.dtype == np.float32
        for item in executor.program.items
        if not isinstance(item, int)
        for flat in item.arrays
    )
    ref = run_reference(net, 500)
    sim = run_spike(net, 500, workers=2, compile=True, dtype="float32")
    error = np.sqrt(np.mean((sim.data[probe] - ref.data[probe]) ** 2))
    assert error < 0.05, error
    assert not np.array_equal(sim.data[probe], ref.data[probe])


def test_auto_leaves_small_models_in_python():
    net = MODELS["recurrent_loop"](seed=1)
    model = make_model(net, 0.001)
    model.build(net)
    ops = model.operators
    assert compiler.count_neurons(ops) < compiler.COMPILE_MIN_NEURONS
    assert not compiler.decide("auto", ops)
    assert compiler.decide(True, ops)
    many = ops * (compiler.COMPILE_MAX_OPERATORS // len(ops) + 1)
    assert compiler.count_neurons(many) >= compiler.COMPILE_MIN_NEURONS
    assert not compiler.decide("auto", many)  # too large a graph to compile quickly
    assert not compiler.decide(False, ops)
    with pytest.raises(ValueError):
        compiler.decide("sometimes", ops)


def test_compile_option_is_validated():
    with pytest.raises(nengo.exceptions.ValidationError, match="compile"):
        spike.Simulator(nengo.Network(), compile="yes", progress_bar=False)
    with pytest.raises(nengo.exceptions.ValidationError, match="dtype"):
        spike.Simulator(nengo.Network(), dtype="float16", progress_bar=False)


def test_cache_lives_where_spike_says(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKE_CACHE_DIR", str(tmp_path / "cache"))
    assert compiler.cache_dir() == tmp_path / "cache"
    (tmp_path / "cache" / "pytensor").mkdir(parents=True)
    (tmp_path / "cache" / "pytensor" / "entry").write_bytes(b"x" * 100)
    assert compiler.cache.cache_size() == 100
    assert compiler.clear_cache() == 100
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_pickled_compiled_simulator_continues():
    import pickle

    net = MODELS["recurrent_loop"](seed=2)
    ref = run_reference(net, 200)
    with spike.Simulator(net, progress_bar=False, workers=2, compile=True) as sim:
        sim.run_steps(100)
        copy = pickle.loads(pickle.dumps(sim))
    with copy:
        copy.run_steps(100)
        for mine, theirs in zip(copy.model.probes, ref.model.probes):
            np.testing.assert_allclose(
                copy.data[mine], ref.data[theirs], rtol=0, atol=1e-10
            )


MERGE_SIGNATURE = """
import hashlib, sys
from bench import models
from spike.builder.pipeline import prepare
from spike.plan.pipeline import plan_model
from spike.runtime.merge import merge_plan

net, _ = models.TINY["stream"]()
plans = plan_model(prepare(net), 1, optimize=False).plans
merge_plan(plans[1])

def describe(sig):
    return (sig.shape, sig.base.shape, sig.elemoffset, sig.elemstrides)

ops = [(type(op).__name__, [describe(s) for s in op.all_signals]) for op in plans[1].ops]
print(len(ops), hashlib.sha256(repr(ops).encode()).hexdigest())
"""


@pytest.mark.slow
def test_merged_operators_are_the_same_in_every_process():
    """nengo's optimizer follows set order (memory addresses); Spike's use of it must
    not, or compiled steps would miss the cache on every run."""
    signatures = {
        subprocess.run(
            [sys.executable, "-c", MERGE_SIGNATURE],
            cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(signatures) == 1, signatures


COMPILED_BUILD = """
import spike
from bench import models

net, _ = models.TINY["stream"]()
with spike.Simulator(net, workers=1, compile=True, progress_bar=False) as sim:
    sim.run_steps(5)
"""


@pytest.mark.slow
def test_second_build_of_a_model_compiles_nothing_new(tmp_path):
    """Compile once per machine: a second process building the same (merged) model
    finds all of its compiled code in the cache and writes nothing new."""
    env = dict(os.environ, SPIKE_CACHE_DIR=str(tmp_path / "cache"))

    def build_and_list():
        subprocess.run(
            [sys.executable, "-c", COMPILED_BUILD],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=600,
        )
        return sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())

    first = build_and_list()
    assert any("fgraph" in name or "elemwise" in name for name in first), first
    assert build_and_list() == first


@pytest.mark.parametrize("transposed", [False, True], ids=["stored", "transposed"])
@pytest.mark.parametrize(
    "rows, cols", [(200, 4), (4, 200), (20, 16), (16, 20), (13, 9), (1, 50), (50, 1)]
)
def test_block_sparse_kernel_is_bit_exact(rows, cols, transposed):
    """Every path of the block-sparse kernel (rows eight, four, one at a time; blocks
    of few columns compiled for their width; blocks transposed, rows side by side,
    a pass per column or, for few columns, one pass) sums as scipy does."""
    import scipy.sparse

    from spike.runtime.compiler.kernels import SMALL_COLS, BsrMatVec

    pt = compiler.load_pytensor().tensor
    rng = np.random.RandomState(rows * 100 + cols)
    indptr = np.array([0, 2, 3, 5])  # several blocks per block row
    indices = np.array([0, 2, 1, 0, 1])
    blocks = rng.randn(len(indices), rows, cols)
    x = rng.randn(3 * cols)
    variables = [pt.tensor3("b"), pt.vector("x"), pt.lvector("p"), pt.lvector("i")]
    op = BsrMatVec(cols if cols <= SMALL_COLS else 0, transposed=transposed)
    function = compiler.load_pytensor().function(variables, op(*variables))
    expected = scipy.sparse.bsr_matrix(
        (blocks, indices, indptr), shape=(3 * rows, 3 * cols)
    ).dot(x)
    given = np.ascontiguousarray(blocks.transpose(0, 2, 1)) if transposed else blocks
    np.testing.assert_array_equal(function(given, x, indptr, indices), expected)


@pytest.mark.slow
def test_hot_operators_update_the_arena_in_place():
    """Neurons, merged products and whole-signal copies are lowered to kernels that
    read and write the arena itself, and PyTensor lets them do it in place: no copy
    of the arena, no new vectors per step."""
    from spike.runtime.compiler.kernels import BsrMatVecIncArena, CopyToArena, LIFInArena

    with nengo.Network(seed=3) as net:
        stim = nengo.Node(nengo.processes.WhiteSignal(1.0, high=5, seed=1), size_out=4)
        ensembles = [nengo.Ensemble(100, 4) for _ in range(4)]
        nengo.Connection(stim, ensembles[0])
        for pre, post in zip(ensembles, ensembles[1:]):
            nengo.Connection(pre, post)
        nengo.Probe(ensembles[-1], synapse=0.01)
    executor = compiled_executor(net)
    executor.reset({})
    kernels = {}
    for segment in executor.program.items:
        if not isinstance(segment, compiler.Segment):
            continue
        for node in segment.function.maker.fgraph.apply_nodes:
            assert type(node.op).__name__ != "DeepCopyOp" or node.inputs[0].ndim == 0
            if isinstance(node.op, (LIFInArena, BsrMatVecIncArena, CopyToArena)):
                kernels.setdefault(type(node.op).__name__, []).append(node.op.inplace)
        (arena,) = [a for a, r in zip(segment.arrays, segment.recipes) if r[0] == "arena"]
        assert segment.function(*segment.arrays)[0] is arena
        # steps call the Numba function itself, which updates the arena in place too
        assert segment.callable() is segment.function.vm.jit_fn
        assert segment.callable()(*segment.arrays)[0] is arena
    assert set(kernels) == {"LIFInArena", "BsrMatVecIncArena", "CopyToArena"}, kernels
    assert all(all(flags) for flags in kernels.values()), kernels


def _lif_state(n, seed):
    """A LIF population's state part-way through a run: some refractory, some
    leaving the refractory period within the step, currents above threshold."""
    rng = np.random.RandomState(seed)
    J = rng.uniform(-1, 8, n)
    voltage = rng.uniform(0, 1, n)
    refractory_time = np.where(rng.rand(n) < 0.3, rng.uniform(-0.001, 0.003, n), 0.0)
    return J, voltage, refractory_time


@pytest.mark.parametrize("inplace", [False, True], ids=["copying", "in_place"])
def test_in_arena_kernels_match_nengo_and_scipy(inplace):
    """Each in-arena kernel, in both forms (the copying one runs where PyTensor
    cannot update in place), computes bit for bit what nengo's and scipy's code
    computes on the same arena."""
    import scipy.sparse
    from nengo.neurons import LIF

    from spike.runtime.compiler import kernels
    from spike.runtime.compiler.kernels import BsrMatVecIncArena, CopyToArena, LIFInArena
    from spike.runtime.compiler.program import compile_mode

    pytensor = compiler.load_pytensor()
    pt = pytensor.tensor
    mode = compile_mode()
    if not inplace:
        mode = mode.excluding("spike_inplace_in_arena")

    def run(op, arena, *others):
        variables = [pt.vector("arena", shape=arena.shape)] + [
            pt.tensor(f"x{i}", dtype=str(o.dtype), shape=o.shape) for i, o in enumerate(others)
        ]
        function = pytensor.function(
            [pytensor.In(variables[0], mutable=True)] + variables[1:],
            op(*variables),
            mode=mode,
            accept_inplace=True,
        )
        (node,) = function.maker.fgraph.apply_nodes
        assert node.op.inplace is inplace
        return function(arena.copy(), *others)

    n = 2500
    assert n > 2 * kernels.LIF_CHUNK  # chunks, one of them partly filled
    J, voltage, refractory_time = _lif_state(n, seed=1)
    arena = np.concatenate([np.zeros(3), J, voltage, refractory_time, np.zeros(n)])
    starts = (3, 3 + n, 3 + 2 * n, 3 + 3 * n)
    lif = LIF()
    for _ in range(20):  # spikes, refractory periods, partial steps
        expected = arena.copy()
        views = [expected[s : s + n] for s in starts]
        lif.step(0.001, views[0], views[3], views[1], views[2])
        op = LIFInArena(
            dt=0.001, tau_rc=lif.tau_rc, tau_ref=lif.tau_ref, min_voltage=lif.min_voltage,
            amplitude=lif.amplitude, starts=starts, n=n, inplace=False,
        )
        arena = run(op, arena, ufuncs.loop_table())
        np.testing.assert_array_equal(arena, expected)
    assert 0 < np.count_nonzero(arena[starts[3] :]) < n

    rng = np.random.RandomState(2)
    indptr, indices = np.array([0, 2, 3, 5]), np.array([0, 2, 1, 0, 1])
    for rows, cols, transposed, dtype, skip_zeros in [
        (20, 4, False, np.float64, False), (4, 20, False, np.float64, False),
        (40, 16, True, np.float64, False), (40, 4, True, np.float64, False),
        (20, 4, False, np.float32, False), (40, 16, True, np.float32, False),  # float32
        (40, 4, True, np.float32, False),
        # zero inputs skipped: 4-row groups, 8-row groups and single rows
        (4, 20, False, np.float64, True), (13, 20, False, np.float64, True),
        (40, 16, True, np.float64, True), (40, 16, True, np.float32, True),
    ]:
        blocks = rng.randn(len(indices), rows, cols).astype(dtype)
        x, y = rng.randn(3 * cols), rng.randn(3 * rows)
        if skip_zeros:  # spikes: mostly zeros, of both signs; a NaN is not skipped
            blocks[0, 0, :] = 0.0
            x[rng.rand(x.size) < 0.8] = 0.0
            x[rng.rand(x.size) < 0.2] = -0.0
            x[:cols] = 0.0  # a block with no input at all
            x[-1] = np.nan
            y[:2] = -0.0
        arena = np.concatenate([y, x])
        expected = arena.copy()
        matrix = scipy.sparse.bsr_matrix(  # float32 blocks widened, as nengo's product does
            (blocks.astype(np.float64), indices, indptr), shape=(3 * rows, 3 * cols)
        )
        expected[: 3 * rows] += matrix.dot(x)
        op = BsrMatVecIncArena(
            cols=cols if cols <= 8 else 0, transposed=transposed, skip_zeros=skip_zeros,
            x_start=3 * rows, x_size=3 * cols, y_start=0, y_size=3 * rows,
            inplace=False,
        )
        given = np.ascontiguousarray(blocks.transpose(0, 2, 1)) if transposed else blocks
        actual = run(op, arena, given, indptr, indices)
        np.testing.assert_array_equal(actual, expected)
        # the same bits: zeros of the same sign, the same NaNs
        np.testing.assert_array_equal(actual.view(np.int64), expected.view(np.int64))

    arena = rng.randn(30)
    bias = rng.randn(10)
    for src_start, inc in [(None, False), (None, True), (20, False), (20, True)]:
        expected = arena.copy()
        src = bias if src_start is None else expected[20:30].copy()
        if inc:
            expected[5:15] += src
        else:
            expected[5:15] = src
        op = CopyToArena(src_start=src_start, dst_start=5, n=10, inc=inc, inplace=False)
        others = (bias,) if src_start is None else ()
        np.testing.assert_array_equal(run(op, arena, *others), expected)


def test_segment_calls_the_function_where_it_has_no_numba_code():
    """A segment compiled by another linker (here PyTensor's Python one) is called
    through its `Function`, with the same results."""
    pytensor = compiler.load_pytensor()
    x = pytensor.tensor.vector("x", shape=(3,))
    function = pytensor.function([x], [pytensor.Out(x * 2.0, borrow=True)], mode="FAST_COMPILE")
    arena = np.arange(3.0)
    segment = compiler.Segment([0], function, [arena], [("arena",)])
    assert segment.callable() is function
    segment.make_step()()
    np.testing.assert_array_equal(arena, [0.0, 2.0, 4.0])


@pytest.mark.slow
@pytest.mark.parametrize("weight", [0.5, np.inf, 1e300], ids=["finite", "inf", "inf_in_float32"])
def test_products_skip_zero_inputs_only_where_exact(weight):
    """Decoders and neuron-to-neuron weights skip the columns of neurons that did
    not spike, unless a weight is infinite (in the matrices' dtype): ``inf * 0``
    is NaN, which a skipped term would lose."""
    from spike.runtime.compiler.kernels import BsrMatVecIncArena

    with nengo.Network(seed=5) as net:  # two of each, so nengo merges the products
        stim = nengo.Node([0.5, -0.2])
        for _ in range(2):
            a = nengo.Ensemble(40, 2)
            b = nengo.Ensemble(30, 2)
            nengo.Connection(stim, a)
            transform = np.full((30, 40), 1e-3)
            transform[0, 0] = weight
            nengo.Connection(a.neurons, b.neurons, transform=transform)
            nengo.Probe(b, synapse=0.01)

    def flags(matrix_dtype):
        executor = compiled_executor(net, matrix_dtype=matrix_dtype)
        return {
            node.op.y_size: node.op.skip_zeros
            for segment in executor.program.items
            if isinstance(segment, compiler.Segment)
            for node in segment.function.maker.fgraph.apply_nodes
            if isinstance(node.op, BsrMatVecIncArena) and not node.op.cols
        }

    exact64 = bool(np.isfinite(weight))
    exact32 = exact64 and weight < 1e38
    for matrix_dtype, exact in [("float64", exact64), ("float32", exact32)]:
        found = flags(matrix_dtype)  # {rows of the product: skip_zeros}
        assert found[60] is exact, (matrix_dtype, found)  # the weights, 2 x 30 rows
        assert found[4] is True, (matrix_dtype, found)  # the decoders, 2 x 2 rows


def test_segment_checks_its_arrays_before_calling_numba_directly():
    """Numba's code does not check bounds: a segment whose arrays do not fit its
    function's inputs raises instead of reading out of range."""
    pytensor = compiler.load_pytensor()
    from spike.runtime.compiler.program import compile_mode

    x = pytensor.tensor.vector("x", shape=(3,))
    function = pytensor.function(
        [pytensor.In(x, mutable=True)], [pytensor.Out(x * 2.0, borrow=True)],
        mode=compile_mode(),
    )
    segment = compiler.Segment([0], function, [np.arange(3.0)], [("arena",)])
    np.testing.assert_array_equal(segment.callable()(*segment.arrays)[0], [0.0, 2.0, 4.0])
    with pytest.raises(TypeError):
        compiler.Segment([0], function, [np.arange(5.0)], [("arena",)]).callable()
