"""What work and exchange cost on one machine, and the figures kept between runs.

A `Calibration` holds seconds per unit of each kind of work (`spike.plan.cost`) and
what exchanging values with another worker costs (`ExchangeCosts`). ``spike dry-run``
measures them (`spike.tools.calibrate`) and keeps them in Spike's cache directory,
where later Simulators on the machine find them (`machine_calibration`).
"""

import json
import os
from dataclasses import asdict, dataclass, field

from spike import config
from spike.plan.cost import WORK_KINDS


@dataclass
class Calibration:
    """Seconds per unit of each kind of work, measured on one machine, and what
    exchanging values between workers costs there (`ExchangeCosts`
    fields; empty: the defaults)."""

    seconds_per_unit: dict
    machine: dict = field(default_factory=dict)
    measured_at: str = ""
    exchange: dict = field(default_factory=dict)

    def seconds(self, work):
        return float(sum(self.seconds_per_unit[k] * work.get(k, 0) for k in WORK_KINDS))

    @property
    def quiet(self):
        """Whether other processes used at most `BUSY_LIMIT` of the CPUs while this
        was measured (True when that is unknown)."""
        return self.machine.get("busy_elsewhere", 0.0) <= BUSY_LIMIT

    def exchange_costs(self):
        return ExchangeCosts.from_dict(self.exchange)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        units = {k: float(data["seconds_per_unit"][k]) for k in WORK_KINDS}
        exchange = {k: float(v) for k, v in dict(data.get("exchange", {})).items()}
        return cls(
            units, dict(data.get("machine", {})), str(data.get("measured_at", "")), exchange
        )


DEFAULT_CALIBRATION = Calibration(
    {"neurons": 2.5e-8, "macs": 1.0e-9, "elements": 2.0e-9, "operators": 3.0e-6},
    {"note": "defaults (2-core AMD EPYC, numpy 2.3); run `spike dry-run` to measure"},
)  # exchange: spike.plan.calibration.ExchangeCosts' defaults


BUSY_LIMIT = 0.25
"""Above this share of the CPUs used by other processes while `calibrate` measures,
the figures describe the load, not the machine (the exchange's cost, which needs two
cores, grows by orders of magnitude on a loaded machine), and are not kept as the machine's
calibration (`spike.tools.dryrun.dry_run`)."""


def machine_calibration_path():
    return config.cache_dir() / "calibration.json"


def save_machine_calibration(calibration):
    """Keep ``calibration`` (from ``spike dry-run``) for later Simulators here."""
    path = machine_calibration_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(calibration.to_dict(), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def machine_calibration():
    """The calibration ``spike dry-run`` last measured here, else `DEFAULT_CALIBRATION`."""
    try:
        return Calibration.from_dict(json.loads(machine_calibration_path().read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_CALIBRATION


class ExchangeCosts:
    """What exchanging values costs a worker per step, for comparing placements.

    Parameters
    ----------
    partner_seconds : float
        Per other worker on the same host exchanged with (measured by ``make
        bench``'s exchange micro-benchmark, and by ``spike dry-run``).
    remote_partner_seconds : float
        Per worker on another host.
    local_bytes_per_second, remote_bytes_per_second : float
        Bandwidth for the bytes themselves.
    """

    def __init__(self, partner_seconds=15e-6, remote_partner_seconds=150e-6,
                 local_bytes_per_second=2e9, remote_bytes_per_second=1e8):
        self.partner_seconds = float(partner_seconds)
        self.remote_partner_seconds = float(remote_partner_seconds)
        self.local_bytes_per_second = float(local_bytes_per_second)
        self.remote_bytes_per_second = float(remote_bytes_per_second)

    def to_dict(self):
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data):
        return cls(**{k: float(v) for k, v in data.items() if k in vars(cls())})


EXCHANGE = ExchangeCosts()
"""Defaults until ``spike dry-run`` measures this machine: `ExchangeCosts`' own."""
