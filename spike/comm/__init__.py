"""Stage 3, communication: the wire format, the protocol, and the per-step exchange.

`wire` encodes and checks every control message (nothing is unpickled); `protocol`
names the operations and the fields each carries; `channels` carries one peer's
per-step values to another over the transport an address names (`shm` is the
shared-memory ring between peers on one host); `exchange` holds a peer's channels
for one Simulator.
"""
