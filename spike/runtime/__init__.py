"""Stage 4, runtime: running one peer's share of a model, step by step.

`executor` runs a `spike.plan.peers.PeerPlan` (merged by `merge`, compiled by
`compiler`, its probes kept by `recording`, its random states from `rng`);
`worker` is the worker process serving a client's requests; `shares` caches
prepared shares between runs.
"""
