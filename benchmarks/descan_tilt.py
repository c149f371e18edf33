"""Descan drift simulated as a shift of the wave, against the benchmark's shift of intensities.

A physical descan moves the far-field *wave* after the specimen; the benchmark's drift
(``simulation.detector.linear_descan``) moves the noise-free *intensities* by a bilinear
interpolation, which also blurs each pattern by a kernel that changes with its sub-pixel
shift. This script computes abTEM's exit waves of the benchmark scan once (the far-field
intensities of these waves are abTEM's patterns to 1e-6), and records the drift either way:

* ``"drift": "wave"``: the exit wave of position ``j`` times a phase ramp centred on the
  probe, so that its far field moves by the drift exactly (sub-pixel, no blur), then
  ``|FFT|^2``;
* ``"drift": "intensity"``: ``|FFT|^2`` of the exit wave moved by ``linear_descan`` (the
  benchmark's drift);
* ``"drift": "none"``: no drift.

Then the centred crop of the detector, shot noise (seed 0) if ``dose`` is given, and one
reconstruction of :func:`descan_oracle.reconstruct_and_score` (``basis``: ``"plain"``,
``"z36"``, ``"dp15"`` or a basis name of ``reconstruction_quality.py`` such as
``"suggested40"`` or ``"z36+pca2"``; 30 iterations). One JSON line per call.

Usage::

    python benchmarks/descan_tilt.py \
        '{"kind": "2d", "dose": 2e4, "descan": 2.0, "drift": "wave", "basis": "z36"}'
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from descan_oracle import reconstruct_and_score
from harness import emit


def _exit_waves(preset, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """abTEM's exit waves ``(R_x, R_y, g, g)`` of the preset's scan and the probe positions
    ``(R_x R_y, 2)`` [simulation px] (both cached as .npy)."""
    from py4dstem_compressed.simulation import datasets
    from py4dstem_compressed.simulation.cache import cache_directory
    from py4dstem_compressed.simulation.structures import build_structure

    path = Path(cache_directory()) / f"descan_tilt_exit_waves_{preset.name}_{kind}.npy"
    positions_path = path.with_suffix(".positions.npy")
    if path.exists() and positions_path.exists():
        return np.load(path), np.load(positions_path).reshape(-1, 2)
    abtem = datasets._import_abtem()
    atoms, _, _, scan_start = build_structure(preset, kind)
    grid = datasets._simulation_grid(preset, atoms)
    potential, probe, scan = datasets._scan_setup(abtem, atoms, preset, grid, scan_start, 0)
    waves = probe.multislice(potential, scan=scan).compute(progress_bar=False)
    array = np.asarray(waves.array, dtype=np.complex64)
    positions = np.asarray(scan.get_positions(), dtype=np.float64).reshape(-1, 2)
    probe_px = positions / np.asarray(waves.sampling)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(positions_path, probe_px)
    np.save(path, array)
    return array, probe_px


def _patterns(case: dict, preset) -> np.ndarray:
    """Noise-free far-field intensities ``(R_x, R_y, g, g)`` of the case's drift."""
    from py4dstem_compressed.simulation.detector import linear_descan

    waves, probe_px = _exit_waves(preset, case["kind"])
    if case["drift"] == "wave":
        size = waves.shape[-1]
        flat = waves.reshape(-1, size, size)
        steps = max(len(flat) - 1, 1)
        out = np.empty(flat.shape, np.float32)
        pixels = np.arange(size, dtype=np.float64)
        for j, wave in enumerate(flat):
            shift = case["descan"] * j / steps / math.sqrt(2.0)  # detector px along each axis
            # coordinates relative to the probe, wrapped: the ramp's jump sits opposite it
            x = (pixels - probe_px[j, 0] + size / 2) % size - size / 2
            y = (pixels - probe_px[j, 1] + size / 2) % size - size / 2
            ramp = np.exp(2j * np.pi * shift * (x[:, None] + y[None, :]) / size)
            far = np.fft.fftshift(np.fft.fft2(wave * ramp))
            out[j] = np.abs(far) ** 2
        return out.reshape(waves.shape)
    patterns = np.abs(np.fft.fftshift(np.fft.fft2(waves), axes=(-2, -1))) ** 2
    patterns = patterns.astype(np.float32)
    if case["drift"] == "intensity":
        patterns = linear_descan(patterns, case["descan"])
    return patterns


def run(case: dict) -> dict:
    """One case in this process: the case with its scores."""
    import matplotlib

    matplotlib.use("Agg")
    from py4dstem_compressed.simulation.datasets import simulate
    from py4dstem_compressed.simulation.detector import crop_and_bin, shot_noise
    from py4dstem_compressed.simulation.presets import PRESETS

    preset = PRESETS[case.get("preset", "small")]
    if preset.detector_binning != 1 or preset.source_size or preset.num_frozen_phonons:
        raise ValueError("descan_tilt simulates coherent presets without binning or phonons")
    data = simulate(preset=preset.name, kind=case["kind"], progress_bar=False)
    patterns = crop_and_bin(_patterns(case, preset), preset.detector_gpts, 1)
    if case.get("dose") is not None:
        patterns, _ = shot_noise(patterns, case["dose"], preset.scan_step, 0)
    data.datacube.data = np.ascontiguousarray(patterns, dtype=np.float32)
    return reconstruct_and_score(case, data)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    emit(run(json.loads(sys.argv[1])))
