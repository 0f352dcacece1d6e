"""Stage 2, plan: how many workers, which actor runs where, each peer's share.

Costs (`cost`, `calibration`) estimate each actor's compute and memory; placement
(`placement`) balances actors over workers; allocation files (`allocation`) keep a
placement for later runs; `peers` makes each peer's `PeerPlan` and the routes
between peers. `pipeline.plan_model` runs them in order. Nothing here starts a
process or opens a socket.
"""
