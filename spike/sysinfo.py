"""What Spike reads of this machine and its processes, beyond what psutil says.

psutil gives CPU times, memory and process states portably. Two things it lacks
are read here from Linux's ``/proc``: a process's peak resident memory
(``VmHWM``), which `spike.plan.cost` estimates and the benchmarks and dry runs
measure, and the processor's model name (bench results name the machine). Both
return a neutral value where ``/proc`` is absent.
"""

import os

import psutil


def process_running(pid):
    """True if ``pid`` is a live process (a zombie is not: it can do nothing more)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):  # gone, not ours to see, or not a pid
        return False


def cpu_busy_total():
    """``(busy, total)`` CPU seconds of all this machine's CPUs since boot.

    Busy is all but idle and I/O-wait time (a virtual machine's stolen time counts
    as busy); guest time is left out of both, as the kernel already counts it as
    user time. Only differences of two readings mean anything.
    """
    times = psutil.cpu_times()
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def peak_rss_bytes(pid=None):
    """Peak resident memory (``VmHWM``) of process ``pid`` (default: this one), in
    bytes; 0 if unknown (no such process, or no ``/proc``)."""
    pid = os.getpid() if pid is None or pid == "self" else pid
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB
    except OSError:
        pass
    return 0


def _cpuinfo(key):
    """The value of the first ``key`` line of ``/proc/cpuinfo``, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == key:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model():
    """The processor's model name (from ``/proc/cpuinfo``), or None if unknown."""
    return _cpuinfo("model name")


SIMD_LEVELS = [("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2")]
"""CPU flags of ``/proc/cpuinfo``, best first, and the SIMD level each names."""


def simd_level():
    """The best SIMD extension the processor reports (``"AVX-512"``, ...), or None."""
    flags = set((_cpuinfo("flags") or "").split())
    return next((name for flag, name in SIMD_LEVELS if flag in flags), None)
