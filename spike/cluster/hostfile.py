"""Hostfiles: which hosts run a job's workers, and how many on each.

The format is that of an MPI hostfile, one host a line::

    # comments start with '#' at the start of a line or after a space
    node1                    # default port, slots = the daemon's own count
    node2:9500 slots=4
    10.0.0.3 slots=2 key=rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7
    [fd00::7]:9470 slots=8

``host`` is a name or an address (IPv6 in brackets), ``port`` the port of the host's
`spike-daemon` (default `DEFAULT_PORT`), ``slots=N`` the most workers Spike starts
there, and ``key=`` the daemon's public CURVE key (Z85, 40 characters) when that host
has a key of its own rather than the cluster's ``daemon.key`` (see `spike.cluster.keys`).
"""

import dataclasses
import os
import re

from spike.exceptions import HostfileError

DEFAULT_PORT = 9470
"""The port `spike-daemon` listens on unless told otherwise."""

_COMMENT = re.compile(r"(?:^|\s)#")
"""A comment starts with '#' at the start of a line or after a space (a Z85 key may
hold '#')."""


@dataclasses.dataclass(frozen=True)
class Host:
    """One line of a hostfile.

    Attributes
    ----------
    name : str
        Host name or address (without brackets for IPv6).
    port : int
        Port of the host's daemon.
    slots : int or None
        Most workers to start there (None: as many as the daemon offers).
    key : str or None
        The daemon's public key (Z85) if given on the line.
    """

    name: str
    port: int = DEFAULT_PORT
    slots: int | None = None
    key: str | None = None

    @property
    def address(self):
        """The daemon's ZeroMQ address, ``tcp://host:port``."""
        host = f"[{self.name}]" if ":" in self.name else self.name
        return f"tcp://{host}:{self.port}"

    def __str__(self):
        host = f"[{self.name}]" if ":" in self.name else self.name
        return f"{host}:{self.port}"


def _split_host_port(text, where):
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise HostfileError(f"{where}: unclosed '[' in {text!r}")
        name, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise HostfileError(f"{where}: expected ':port' after {text[:end + 1]!r}")
        port = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise HostfileError(f"{where}: write IPv6 addresses in brackets: [{text}]")
    else:
        name, _, port = text.partition(":")
        port = port if ":" in text else None
    if not name:
        raise HostfileError(f"{where}: empty host name")
    if port is None:
        return name, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise HostfileError(f"{where}: bad port {port!r}")
    return name, int(port)


def parse_hostfile(text, source="<hostfile>"):
    """The hosts of a hostfile's text, in order.

    Parameters
    ----------
    text : str
        The hostfile's contents.
    source : str
        Named in error messages.

    Returns
    -------
    list of Host

    Raises
    ------
    HostfileError
        On an unknown option, a bad port or slot count, or a host named twice.
    """
    hosts = []
    seen = set()
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{source}, line {number}"
        words = _COMMENT.split(line, 1)[0].split()
        if not words:
            continue
        name, port = _split_host_port(words[0], where)
        options = {}
        for word in words[1:]:
            key, eq, value = word.partition("=")
            if not eq or key not in ("slots", "key") or key in options:
                raise HostfileError(
                    f"{where}: unknown or repeated option {word!r} "
                    "(expected slots=N or key=PUBLIC_KEY)"
                )
            options[key] = value
        slots = None
        if "slots" in options:
            if not options["slots"].isdigit() or int(options["slots"]) < 1:
                raise HostfileError(f"{where}: slots must be a positive integer")
            slots = int(options["slots"])
        key = options.get("key")
        if key is not None and len(key) != 40:
            raise HostfileError(f"{where}: key must be a 40-character Z85 public key")
        if (name, port) in seen:
            raise HostfileError(f"{where}: {words[0]} is named twice")
        seen.add((name, port))
        hosts.append(Host(name, port, slots, key))
    return hosts


def read_hostfile(path):
    """The hosts listed in the hostfile at ``path`` (see `parse_hostfile`)."""
    try:
        with open(os.path.expanduser(path)) as f:
            text = f.read()
    except OSError as e:
        raise HostfileError(f"cannot read hostfile {path}: {e.strerror}") from None
    hosts = parse_hostfile(text, source=str(path))
    if not hosts:
        raise HostfileError(f"hostfile {path} names no host")
    return hosts


def as_hosts(hosts):
    """A list of `Host` from a hostfile path, a list of Hosts or of ``"host:port"``."""
    if isinstance(hosts, (str, os.PathLike)):
        return read_hostfile(hosts)
    result = []
    for entry in hosts:
        if isinstance(entry, Host):
            result.append(entry)
        else:
            result.extend(parse_hostfile(str(entry), source=repr(entry)))
    if not result:
        raise HostfileError("no hosts given")
    return result
