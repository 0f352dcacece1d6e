"""Test hosts made of Linux network namespaces, joined by a bridge, each with sshd.

Layout (``10.X.Y.0/24``, a /24 not in use on this machine)::

    test process (root namespace) 10.X.Y.1 --veth--+
                                                  [bridge in namespace <p>sw]
    namespace <p>h0  eth0 10.X.Y.2 --------veth---+
    namespace <p>h1  eth0 10.X.Y.3 --------veth---+   ...

Each host namespace runs Debian's sshd (``/usr/sbin/sshd -D``) listening on its own
address only, with a host key, authorized key, known_hosts and ssh config made for the
test. Every process started in a namespace is killed by pid, and the namespaces (and
with them every veth) are deleted when the test ends. Traffic goes only to these
addresses.
"""

import ipaddress
import os
import random
import shutil
import socket
import subprocess
import time

from daemonctl import die_with_test

from spike.cluster.daemon import remove_stale_directories

SSHD = "/usr/sbin/sshd"


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


def unavailable():
    """Why network-namespace hosts cannot be made here (None if they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"spkprobe{os.getpid()}"
    result = _ip("netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"`ip netns add` fails here: {result.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    if not os.path.exists(SSHD):
        return f"no {SSHD}: install openssh-server (`make host-test-deps` does, as root)"
    if shutil.which("ssh-keygen") is None:
        return "no ssh-keygen (openssh-client)"
    try:
        import paramiko  # noqa: F401
    except ImportError:
        return "paramiko is not installed"
    return None


def _free_subnet():
    used = _ip("-4", "-o", "addr").stdout + _ip("-4", "route").stdout
    rng = random.Random(os.getpid())
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{rng.randrange(200, 250)}.{rng.randrange(256)}.0/24")
        prefix = str(net.network_address).rsplit(".", 1)[0] + "."
        if prefix not in used:
            return prefix
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test hosts")


class TestHosts:
    """``n`` namespace hosts with sshd; use as a context manager.

    Attributes
    ----------
    addresses : list of str
        Each host's address.
    client_address : str
        The test process's address on the bridge.
    ssh_config : str
        An ssh config file for the hosts (point ``SPIKE_SSH_CONFIG`` at it).
    """

    def __init__(self, n, workdir):
        self.n = n
        self.workdir = str(workdir)
        tag = f"{os.getpid() % 100000}{random.randrange(100)}"
        self.switch = f"spk{tag}sw"
        self.namespaces = [f"spk{tag}h{k}" for k in range(n)]
        self.root_if = f"spk{tag}c"
        self.procs = []
        self.created = []

    # -- set-up and tear-down -------------------------------------------------------

    def __enter__(self):
        try:
            self._make_network()
            self._make_ssh()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def _make_network(self):
        prefix = _free_subnet()
        self.client_address = prefix + "1"
        self.addresses = [prefix + str(k + 2) for k in range(self.n)]
        _ip("netns", "add", self.switch)
        self.created.append(self.switch)
        _ip("-n", self.switch, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        _ip("link", "add", self.root_if, "type", "veth", "peer", "name", "up0",
            "netns", self.switch)
        _ip("addr", "add", f"{self.client_address}/24", "dev", self.root_if)
        _ip("link", "set", self.root_if, "up")
        _ip("-n", self.switch, "link", "set", "up0", "master", "br0", "up")
        for k, (ns, address) in enumerate(zip(self.namespaces, self.addresses)):
            _ip("netns", "add", ns)
            self.created.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{k}",
                "netns", self.switch)
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", self.switch, "link", "set", f"p{k}", "master", "br0", "up")

    def _make_ssh(self):
        ssh = os.path.join(self.workdir, "ssh")
        os.makedirs(ssh, mode=0o700, exist_ok=True)
        host_key = os.path.join(ssh, "host_ed25519")
        user_key = os.path.join(ssh, "id_ed25519")
        for path in (host_key, user_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path],
                           check=True, timeout=30)
        shutil.copy(user_key + ".pub", os.path.join(ssh, "authorized_keys"))
        with open(host_key + ".pub") as f:
            host_public = " ".join(f.read().split()[:2])
        with open(os.path.join(ssh, "known_hosts"), "w") as f:
            for address in self.addresses:
                f.write(f"{address} {host_public}\n")
        self.ssh_config = os.path.join(ssh, "config")
        with open(self.ssh_config, "w") as f:
            f.write(
                f"Host {' '.join(self.addresses)}\n"
                "    User root\n"
                f"    IdentityFile {user_key}\n"
                f"    UserKnownHostsFile {os.path.join(ssh, 'known_hosts')}\n"
                "    StrictHostKeyChecking yes\n"
            )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation
        for k, (ns, address) in enumerate(zip(self.namespaces, self.addresses)):
            config = os.path.join(ssh, f"sshd_config_{k}")
            with open(config, "w") as f:
                f.write(
                    "Port 22\n"
                    f"ListenAddress {address}\n"
                    f"HostKey {host_key}\n"
                    f"PidFile {os.path.join(ssh, f'sshd_{k}.pid')}\n"
                    f"AuthorizedKeysFile {os.path.join(ssh, 'authorized_keys')}\n"
                    "PermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\n"
                    "UsePAM no\n"
                    "StrictModes no\n"
                    "Subsystem sftp internal-sftp\n"
                    "LogLevel ERROR\n"
                )
            with open(os.path.join(ssh, f"sshd_{k}.log"), "w") as log:
                self.procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", config],
                    stdin=subprocess.DEVNULL, stderr=log, preexec_fn=die_with_test,
                ))
        for address in self.addresses:
            self.wait_port(address, 22)

    @staticmethod
    def wait_port(address, port, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((address, port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def pids(self, k):
        """PIDs of every process in host ``k``'s namespace."""
        result = _ip("netns", "pids", self.namespaces[k], check=False)
        return [int(p) for p in result.stdout.split()]

    def cut(self, k):
        """Take host ``k``'s link down: it is cut off, its processes keep running."""
        _ip("-n", self.namespaces[k], "link", "set", "eth0", "down")

    def close(self):
        for ns in self.created:
            for pid in [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        remove_stale_directories()  # of the daemons killed above
        for ns in reversed(self.created):
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.root_if, check=False)
        self.created = []
