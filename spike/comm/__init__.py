"""Stage 3, communication: the wire format and the per-step exchange of values.

`wire` encodes and checks every message (nothing is unpickled); `shm` is the
shared-memory ring between peers on one host; `exchange` sends and receives the
crossing values of each step.
"""
