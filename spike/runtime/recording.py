"""Recording a peer's probes, step after step, into preallocated rows.

nengo's Simulator (and Spike's peers before this module) copies each probed signal
into a new array every sampled step, and stacks the list when the data is read: a
Python call and an allocation per probe per step, right after a step has run through
the caches. A `ProbeRecorder` instead copies all the
float64 probes sampled at the same period that live in one array (all of a
compiled worker's: its arena) with one indexed copy per step (see
`spike.plan.peers.Route`), into the next row of a block of rows allocated `BLOCK_ROWS`
at a time. (Probes of other dtypes are copied one by one, into rows of bytes.)
"""

import numpy as np

from spike.plan.peers import Route

BLOCK_ROWS = 1024


class _Group:
    """The probes of one sampling period: their route and the rows recorded so far."""

    def __init__(self, period, probes):
        self.period = period
        self.probes = probes
        self.route = Route([probe.signal for probe in probes])
        words = all(probe.signal.dtype == np.float64 for probe in probes)
        # rows of float64 words where the route's values all are; of bytes otherwise
        self.row_dtype, self.row_size = (
            (np.float64, self.route.nbytes // 8) if words else (np.uint8, self.route.nbytes)
        )
        self.clear()

    def next_row(self):
        if self._row == BLOCK_ROWS:
            self.blocks.append(np.empty((BLOCK_ROWS, self.row_size), self.row_dtype))
            self._row = 0
        row = self.blocks[-1][self._row]
        self._row += 1
        self.rows += 1
        return row

    def take(self):
        """``{probe key: (samples, *shape) array}``, and forget the rows."""
        itemsize = np.dtype(self.row_dtype).itemsize
        taken = {}
        for probe, offset in zip(self.probes, self.route.offsets):
            sig = probe.signal
            start = offset // itemsize
            stop = start + sig.nbytes // itemsize
            values = np.empty((self.rows, stop - start), self.row_dtype)
            for i, block in enumerate(self.blocks):  # each block's filled rows
                first = i * BLOCK_ROWS
                rows = min(BLOCK_ROWS, self.rows - first)
                values[first : first + rows] = block[:rows, start:stop]
            taken[probe.key] = values.view(sig.dtype).reshape((self.rows,) + sig.shape)
        self.clear()
        return taken

    def clear(self):
        self.blocks = []
        self.rows = 0
        self._row = BLOCK_ROWS


class ProbeRecorder:
    """Samples of a peer's probes (`spike.plan.peers.ProbePlan`) since the last `take`.

    Parameters
    ----------
    probes : list of ProbePlan
    """

    def __init__(self, probes):
        periods = {}
        for probe in probes:
            periods.setdefault(probe.period, []).append(probe)
        self.groups = [_Group(period, group) for period, group in periods.items()]

    def record(self, signals, n_steps):
        """Take the samples due after step ``n_steps`` (nengo's rule: where
        ``n_steps % period < 1``)."""
        for group in self.groups:
            if n_steps % group.period < 1:
                group.route.pack(signals, group.next_row())

    def take(self):
        """``{probe key: array of samples}`` recorded since the last call."""
        taken = {}
        for group in self.groups:
            taken.update(group.take())
        return taken

    def clear(self):
        for group in self.groups:
            group.clear()
