"""A terminal progress bar for runs: simulated time, steps per second and ETA.

``spike run`` shows it for runs long enough to need one (nengo's `AutoProgressBar`
waits until the expected time passes a second)::

    [########                ] 2.150/10.000 s simulated  4,213 steps/s  ETA 0:00:01

Other stages (building, placing, starting workers) are drawn as nengo draws them.
"""

import sys
from shutil import get_terminal_size

from nengo.utils.progress import AutoProgressBar, TerminalProgressBar, timestamp2timedelta


class RunProgressBar(TerminalProgressBar):
    """nengo's terminal bar, with the simulated time and steps per second while running.

    Parameters
    ----------
    dt : float
        The simulator's time step (to turn steps into simulated seconds).
    """

    def __init__(self, dt):
        super().__init__()
        self.dt = dt

    def describe(self, progress):
        """The text after the bar: simulated time, steps per second, ETA."""
        elapsed = max(progress.elapsed_seconds(), 1e-9)
        rate = progress.n_steps / elapsed
        return (
            f"{progress.n_steps * self.dt:.3f}/{progress.max_steps * self.dt:.3f} s "
            f"simulated  {rate:,.0f} steps/s  ETA {timestamp2timedelta(progress.eta())}"
        )

    def _get_in_progress_line(self, progress):
        if progress.name_during != "Simulating":
            return super()._get_in_progress_line(progress)
        text = self.describe(progress)
        width, _ = get_terminal_size()
        bar = max(10, width - len(text) - 3)
        filled = int(bar * progress.progress)
        return "\r" + f"[{'#' * filled}{' ' * (bar - filled)}] {text}"[: max(width, 40)]

    def update(self, progress):
        if progress.finished and progress.name_during == "Simulating":
            elapsed = max(progress.elapsed_seconds(), 1e-9)
            width, _ = get_terminal_size()
            line = (
                f"Simulation finished in {timestamp2timedelta(elapsed)}: "
                f"{progress.n_steps * self.dt:.3f} s simulated, "
                f"{progress.n_steps / elapsed:,.0f} steps/s"
            ).ljust(width)
            sys.stdout.write("\r" + line)
            sys.stdout.flush()
            return
        super().update(progress)


def run_progress_bar(dt, min_eta=1.0):
    """The bar `spike run` uses: shown once a stage is expected to take ``min_eta`` s."""
    return AutoProgressBar(RunProgressBar(dt), min_eta=min_eta)
