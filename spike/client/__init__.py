"""Stage 5, client: the user's side of one simulation.

`pool` starts and reuses local worker processes and carries requests and replies;
`session` drives the workers of one Simulator; `assemble` puts split or divided
signals and probe data back together.
"""
