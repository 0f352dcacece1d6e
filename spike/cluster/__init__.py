"""Beside the client: workers on other hosts, through their daemons.

`hostfile` and `keys` say which hosts and which keys; `daemon` is the host daemon;
`links` are a client's connections to daemons; `hostpool` gives a session workers
on many hosts; `ssh` starts daemons over SSH; `control` is ``spike cluster`` and
``spike monitor``.
"""
