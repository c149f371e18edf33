"""Run a ptychographic reconstruction on a simulated dataset and score it against the truth.

Shared by the demo, the rate-distortion study and the reconstruction benchmarks, so
that every number they report is measured the same way:

* quality: the summed object phase of all slices [rad] is registered to the
  ground-truth projected potential (sub-pixel, best alignment near the shift the scan
  positions predict) and compared by normalised cross-correlation, on the images and
  on band-passed images (0.35-1.2 A detail), and by FSC (Eq. 19) up to the
  ptychographic information limit ``2 alpha / lambda``;
* cost: preprocess seconds and seconds per iteration, and the growth of the resident memory
  if the caller passes a memory probe (``benchmarks/harness.py``'s ``PeakMemory``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from py4dstem_compressed.analysis.registration import register_to_ground_truth
from py4dstem_compressed.analysis.resolution import (
    FSCResult,
    band_pass,
    fourier_shell_correlation,
    normalized_cross_correlation,
)

__all__ = [
    "BAND_ANGSTROM",
    "DEFAULT_RECONSTRUCT_KWARGS",
    "KNOWN_ROTATION_PREPROCESS_KWARGS",
    "ReconstructionResult",
    "bragg_frequencies",
    "run_ptychography",
    "score_reconstruction",
]

#: Detail band of the band-passed correlation [A]: where lost information would show.
BAND_ANGSTROM = (0.35, 1.2)

#: Radius [px] of the shift search around the shift the scan positions predict: they predict
#: it to a pixel or two, while a crystal's next lattice translation lies farther away.
SCAN_SHIFT_SEARCH_RADIUS_PX = 3.0

#: ``preprocess`` settings for simulated scans: py4DSTEM's plots off and the known scan
#: rotation of the simulations (0, no transpose) forced instead of fitted.
KNOWN_ROTATION_PREPROCESS_KWARGS = {
    "plot_center_of_mass": False,
    "plot_rotation": False,
    "plot_probe_overlaps": False,
    "force_com_rotation": 0.0,
    "force_com_transpose": False,
}

#: ``reconstruct`` settings shared by every compared run (uncompressed and compressed):
#: mini-batches of 64 positions, as py4DSTEM's tutorials use mini-batches, and a fixed seed.
DEFAULT_RECONSTRUCT_KWARGS = {"max_batch_size": 64, "seed_random": 0, "progress_bar": False}


@dataclass
class ReconstructionResult:
    """A reconstruction with its timings and its scores against the ground truth.

    Attributes
    ----------
    ptycho : object
        The py4DSTEM (or compressed) ptychography object after ``reconstruct``.
    preprocess_seconds, seconds_per_iteration : float
        Wall-clock cost [s].
    peak_memory_bytes : int or None
        Peak resident memory above the level before ``preprocess`` [bytes], as measured by
        the ``memory_probe`` of :func:`run_ptychography`; None if none was given. Within one
        process, memory freed by earlier runs is reused and not counted: compare runs in
        separate processes (``benchmarks/reconstruction_quality.py``) for peak memory.
    scores : dict
        See :func:`score_reconstruction`.
    """

    ptycho: object
    preprocess_seconds: float
    seconds_per_iteration: float
    peak_memory_bytes: int | None
    scores: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Scalars only (JSON-serialisable); ``rss_growth_mb`` [MiB] only if memory was measured."""
        out = {
            "preprocess_seconds": self.preprocess_seconds,
            "seconds_per_iteration": self.seconds_per_iteration,
        }
        if self.peak_memory_bytes is not None:
            out["rss_growth_mb"] = self.peak_memory_bytes / 2**20
        out.update({k: v for k, v in self.scores.items() if np.isscalar(v)})
        return out


def run_ptychography(
    data,
    dataset,
    num_iter: int,
    compressed: bool | None = None,
    preprocess_kwargs: dict | None = None,
    reconstruct_kwargs: dict | None = None,
    constructor_kwargs: dict | None = None,
    score: bool = True,
    memory_probe: Callable[[], AbstractContextManager] | None = None,
) -> ReconstructionResult:
    """Reconstruct ``data`` with the dataset's microscope parameters and score it.

    Parameters
    ----------
    data : py4DSTEM.DataCube or CompressedDataCube
        What to reconstruct from.
    dataset : SimulatedDataset
        Supplies the microscope parameters and the ground truth.
    num_iter : int
        Gradient-descent iterations.
    compressed : bool, optional
        Use :class:`CompressedMultislicePtychography` (default: when ``data`` is compressed).
    preprocess_kwargs, reconstruct_kwargs, constructor_kwargs : dict, optional
        Extra arguments. By default the known scan rotation of the simulation (0, no
        transpose) is forced, py4DSTEM's plots are off and ``reconstruct`` uses
        :data:`DEFAULT_RECONSTRUCT_KWARGS`.
    score : bool
        Compute :func:`score_reconstruction`.
    memory_probe : callable, optional
        Returns a context manager with a ``peak_bytes`` attribute set on exit (e.g.
        ``benchmarks/harness.py``'s ``PeakMemory``); it wraps ``preprocess`` and
        ``reconstruct``. None: memory is not measured.

    Returns
    -------
    ReconstructionResult
    """
    from py4DSTEM.process.phase import MultislicePtychography

    from py4dstem_compressed.storage.compressed_datacube import CompressedDataCube

    if compressed is None:
        compressed = isinstance(data, CompressedDataCube)
    if compressed:
        from py4dstem_compressed.reconstruction.ptychography import (
            CompressedMultislicePtychography as cls,
        )
    else:
        cls = MultislicePtychography
    pre = {**KNOWN_ROTATION_PREPROCESS_KWARGS, **(preprocess_kwargs or {})}
    rec = dict(DEFAULT_RECONSTRUCT_KWARGS)
    rec.update(reconstruct_kwargs or {})
    kwargs = {"device": "cpu", "verbose": False, **dataset.reconstruction_kwargs()}
    kwargs.update(constructor_kwargs or {})
    memory = memory_probe() if memory_probe is not None else nullcontext()
    with memory:
        start = time.perf_counter()
        ptycho = cls(datacube=data, **kwargs).preprocess(**pre)
        preprocessed = time.perf_counter()
        ptycho = ptycho.reconstruct(num_iter=num_iter, **rec)
        finished = time.perf_counter()
    result = ReconstructionResult(
        ptycho=ptycho,
        preprocess_seconds=preprocessed - start,
        seconds_per_iteration=(finished - preprocessed) / max(num_iter, 1),
        peak_memory_bytes=None if memory_probe is None else int(memory.peak_bytes),
    )
    if score:
        result.scores = score_reconstruction(ptycho, dataset)
    return result


def summed_phase(ptycho) -> np.ndarray:
    """Object phase summed over slices [rad], ``(Px, Py)``.

    A complex object gives its angle; a real one (``object_type="potential"``) is summed as
    is. CuPy objects are copied to the host.
    """
    obj = np.asarray(ptycho.object if not hasattr(ptycho.object, "get") else ptycho.object.get())
    if np.iscomplexobj(obj):
        phase = np.angle(obj)
    else:  # object_type="potential"
        phase = obj
    return phase.sum(0) if phase.ndim == 3 else phase


def bragg_frequencies(
    image: np.ndarray, sampling, max_frequency: float, relative_threshold: float = 0.05
) -> np.ndarray:
    """Spatial frequencies [1/A] of the strongest Fourier peaks of ``image`` (Bragg peaks).

    Peaks are local maxima of ``|F|`` (3 x 3, periodic) above ``relative_threshold`` times the
    strongest non-zero-frequency peak, up to ``max_frequency``.

    Parameters
    ----------
    image : numpy.ndarray
        Real 2D image, e.g. a projected potential.
    sampling : float or (float, float)
        Pixel size [A].
    max_frequency : float
        Highest frequency considered [1/A].
    relative_threshold : float
        Fraction of the strongest peak a peak must reach [dimensionless, 0..1].

    Returns
    -------
    numpy.ndarray
        Sorted unique shell frequencies [1/A], rounded to 1e-3; empty if no peak qualifies.
    """
    from scipy import ndimage

    spectrum = np.abs(np.fft.fft2(image - image.mean()))
    sy, sx = (sampling, sampling) if np.isscalar(sampling) else sampling
    fx = np.fft.fftfreq(image.shape[0], sy)[:, None]
    fy = np.fft.fftfreq(image.shape[1], sx)[None, :]
    radius = np.hypot(fx, fy)
    peaks = (spectrum == ndimage.maximum_filter(spectrum, size=3, mode="wrap")) & (radius > 0)
    peaks &= radius <= max_frequency
    if not peaks.any():
        return np.zeros(0)
    strong = peaks & (spectrum >= relative_threshold * spectrum[peaks].max())
    return np.unique(np.round(radius[strong], 3))


def score_reconstruction(ptycho, dataset, band: tuple[float, float] = BAND_ANGSTROM) -> dict:
    """Compare a reconstruction with the dataset's ground-truth projected potential.

    The summed object phase over the scanned region is registered to the truth near the shift
    the scan positions predict (within ``SCAN_SHIFT_SEARCH_RADIUS_PX``); the FSC runs up to the
    ptychographic information limit ``2 alpha / lambda`` or Nyquist, whichever is lower.

    Parameters
    ----------
    ptycho : object
        A py4DSTEM (or compressed) ptychography object after ``reconstruct``.
    dataset : SimulatedDataset
        Supplies the ground truth, the scan start and the microscope parameters.
    band : (float, float)
        ``(low_angstrom, high_angstrom)`` of the band-passed correlation [A].

    Returns
    -------
    dict
        ``ncc`` and ``ncc_band`` (normalised cross-correlation of the aligned images and of
        their band-passed versions), ``fsc_mean`` (mean FSC up to the cutoff),
        ``fsc_bragg_mean`` (mean FSC at the truth's Bragg frequencies),
        ``fsc_cutoff_inverse_angstrom``, ``shift_px``, ``roi_px`` (compared region of the
        reconstruction, ``(row_start, row_stop, column_start, column_stop)`` [px]),
        ``sampling_angstrom`` (pixel size of the aligned images [A]), the :class:`FSCResult`
        as ``fsc``, and the aligned images ``aligned_reconstruction`` (summed phase [rad]) and
        ``aligned_truth`` (projected potential [V A]).
    """
    phase = summed_phase(ptycho)
    sampling = tuple(float(s) for s in np.broadcast_to(ptycho.sampling, (2,)))
    positions = np.asarray(ptycho._positions_px)
    positions = positions.get() if hasattr(positions, "get") else positions
    lo = np.maximum(np.floor(positions.min(0)).astype(int), 0)
    hi = np.minimum(np.ceil(positions.max(0)).astype(int) + 1, phase.shape)
    expected = positions[0] - np.asarray(dataset.scan_start) / np.asarray(sampling)
    registration = register_to_ground_truth(
        phase,
        dataset.projected_potential,
        sampling,
        dataset.potential_sampling,
        roi=(lo[0], hi[0], lo[1], hi[1]),
        expected_shift_px=expected,
        search_radius_px=SCAN_SHIFT_SEARCH_RADIUS_PX,
    )
    recon, truth = registration.reconstruction, registration.ground_truth
    ncc_band = normalized_cross_correlation(
        band_pass(recon, sampling, *band), band_pass(truth, sampling, *band)
    )
    params = dataset.parameters
    limit = 2 * params["semiangle_cutoff"] * 1e-3 / params["wavelength"]
    nyquist = 0.5 / max(sampling)
    cutoff = min(limit, nyquist)
    fsc: FSCResult = fourier_shell_correlation(recon, truth, sampling, cutoff=cutoff)
    bragg = bragg_frequencies(truth, sampling, cutoff)
    fsc_bragg = fsc.value_at(bragg) if bragg.size else np.array([np.nan])
    return {
        "ncc": float(registration.correlation),
        "ncc_band": float(ncc_band),
        "fsc_mean": float(np.nanmean(fsc.fsc)),
        "fsc_bragg_mean": float(np.nanmean(fsc_bragg)),
        "fsc_cutoff_inverse_angstrom": float(cutoff),
        "shift_px": [float(s) for s in registration.shift_px],
        "roi_px": [int(i) for i in registration.roi],
        "sampling_angstrom": [float(s) for s in registration.sampling],
        "bragg_frequencies_inverse_angstrom": bragg.tolist(),
        "fsc": fsc,
        "aligned_reconstruction": recon,
        "aligned_truth": truth,
    }
