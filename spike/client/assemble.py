"""Whole signals and probe data from the parts that split or divided actors recorded.

A split ensemble's neuron-indexed signals live in one base per part, joined along
the neuron axis; a probe of its decoded output is recorded per part and summed. An
actor divided into groups repeats some signals in every group and holds others as
partial sums (`spike.builder.split`, `spike.builder.passthrough`). The user sees
nengo's signals and probe data either way.
"""

import numpy as np
from nengo.builder.signal import SignalDict


def whole_signals(values, split):
    """A `SignalDict` of ``values`` (``{base: value}`` gathered from the peers) with
    the original signals of split ensembles and divided actors put back together."""
    snapshot = SignalDict()
    for base, value in values.items():
        dict.__setitem__(snapshot, base, value)
    for ensemble_split in split.splits.values():
        for base, (axis, parts) in ensemble_split.bases.items():
            if all(p in values for p in parts):
                whole = np.concatenate([values[p] for p in parts], axis=axis)
                dict.__setitem__(snapshot, base, whole)
    for division in split.divisions:
        for base, copies in division.repeated.items():
            if copies[0] in values:
                dict.__setitem__(snapshot, base, values[copies[0]])
        for base, shares in division.partial.items():
            if all(p in values for p in shares):
                dict.__setitem__(snapshot, base, sum(values[p] for p in shares))
    return snapshot


def probe_samples(records, probes, probe_records, probe_parts):
    """``{probe: samples}`` from ``records`` (``{record key: samples}``, as the peers
    sent them): a probe recorded in parts gets its parts joined or summed
    (`spike.builder.split.ProbeParts`). Probes with nothing recorded are left out."""
    samples_of = {}
    for index, keys in enumerate(probe_records):
        probe = probes[index]
        if len(keys) == 1 and probe not in probe_parts:
            samples = records.get(keys[0])
        else:
            parts = [records[k] for k in keys]
            how = probe_parts[probe]
            if how.combine == "sum":
                samples = parts[0].copy()
                for part in parts[1:]:
                    samples += part
            else:
                samples = np.concatenate(parts, axis=1 + how.axis)
        if samples is not None:
            samples_of[probe] = samples
    return samples_of
