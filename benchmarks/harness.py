"""What every benchmark shares: cases in fresh processes, own peak memory, timing.

* :func:`run_case` runs one case of a benchmark script in a fresh Python process (``script
  [args] --case JSON``) and returns the JSON line the case printed last (:func:`emit`), so
  peak memory and timings of one case are not mixed with the others';
* :func:`own_peak_memory_mb` is the process's own high-water mark, :class:`PeakMemory` the
  growth of the resident memory over a block (for runs that share a process);
* :class:`Stopwatch` and :func:`best_rate` time them.

Not part of the package: the scripts beside this file import it as ``harness`` (their folder
is the first entry of ``sys.path`` when they run).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

__all__ = [
    "PeakMemory",
    "Stopwatch",
    "best_rate",
    "emit",
    "own_peak_memory_mb",
    "run_case",
    "run_json_process",
    "without_perpendicular_norms",
]


# ----------------------------------------------------------------------------- processes


def run_json_process(argv: Sequence[str]) -> tuple[dict | None, str]:
    """Run ``argv`` to completion; its last stdout line is a JSON object.

    Returns
    -------
    result : dict or None
        The parsed last line of stdout; None if the process failed (non-zero exit status).
    stderr : str
        Everything the process wrote to stderr.
    """
    out = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return None, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def run_case(script: str, case: dict, args: Sequence[str] = ()) -> dict:
    """Run one case of ``script`` in a fresh Python process: ``script *args --case JSON``.

    Parameters
    ----------
    script : str
        Path of the benchmark script; it must print its result with :func:`emit`.
    case : dict
        JSON-serialisable description of the case.
    args : sequence of str
        Arguments placed before ``--case`` (e.g. ``("--run", "plain")``).

    Returns
    -------
    dict
        The case's result, or ``{"failed": <last line of its stderr>}`` if it failed.
    """
    result, stderr = run_json_process([sys.executable, script, *args, "--case", json.dumps(case)])
    if result is None:
        return {"failed": (stderr.strip().splitlines() or ["?"])[-1]}
    return result


def emit(result: dict) -> None:
    """Print ``result`` as the one JSON line :func:`run_case` reads back."""
    print(json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- memory


def own_peak_memory_mb() -> float:
    """This process's own peak resident memory [MiB] (``VmHWM`` on Linux).

    ``ru_maxrss`` is the fallback on other systems. On Linux it is avoided: a child started
    by fork/vfork + exec inherits its parent's high-water mark, so a benchmark process would
    report at least the memory of the script that launched it.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """Context manager measuring the peak resident memory above the starting level [bytes].

    A background thread samples the process's RSS (psutil) every ``interval`` seconds [s];
    after the block, ``peak_bytes`` holds the largest growth seen. Memory freed earlier in
    the same process is reused and not counted: for peak memory of one run, run it in its own
    process and read :func:`own_peak_memory_mb`.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.baseline_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        import psutil

        return psutil.Process().memory_info().rss

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._rss() - self.baseline_bytes)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.baseline_bytes = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._rss() - self.baseline_bytes)


# ----------------------------------------------------------------------------- timing


class Stopwatch:
    """Wall-clock seconds since the start or the last :meth:`lap` (``time.perf_counter``)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()

    def lap(self) -> float:
        """Seconds [s] since the previous lap (or the start); starts the next lap."""
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        return seconds


def best_rate(function: Callable[[], object], num_items: int, repeats: int) -> float:
    """Items per second of ``function()``, best of ``repeats`` runs after one warm-up call."""
    function()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        function()
        best = max(best, num_items / (time.perf_counter() - t0))
    return best


# ----------------------------------------------------------------------------- oracles


def without_perpendicular_norms(compressed):
    """A copy of a ``CompressedDataCube`` whose perpendicular norms are unknown (NaN).

    The oracle that isolates what the norms contribute: a reconstruction then runs without
    them, everything else stored is kept.
    """
    import numpy as np

    import py4dstem_compressed as pc

    return pc.CompressedDataCube(
        compressed.coefficients,
        np.full_like(compressed.perpendicular_norms, np.nan),
        compressed.edge_intensity,
        compressed.total_intensity,
        compressed.center_of_mass,
        compressed.basis,
        mode=compressed.mode,
        calibration=compressed.calibration,
        descan_shift_px=compressed.descan_shift_px,
        intensity_per_count=compressed.intensity_per_count,
    )
