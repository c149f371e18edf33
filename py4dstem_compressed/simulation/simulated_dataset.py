"""The result of a simulation: a calibrated 4D-STEM scan with its ground truth.

Frames and units: the datacube's axes are ``(R_x, R_y, Q_x, Q_y)``; ``R_x`` is abTEM's ``x``,
the first axis of the potentials, so ``projected_potential[i, j]`` lies at ``(x, y) =
(i, j) * potential_sampling`` [A] and probe position ``(i, j)`` at ``scan_start + (i, j) *
scan_step`` [A].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import ase
    from py4DSTEM import DataCube

__all__ = ["SimulatedDataset"]


@dataclass
class SimulatedDataset:
    """A simulated 4D-STEM scan with its ground truth.

    Attributes
    ----------
    datacube : py4DSTEM.DataCube
        Diffraction patterns ``(R_x, R_y, Q_x, Q_y)``; ``R_pixel_size`` [A] with units "A",
        ``Q_pixel_size`` [mrad] with units "mrad"; centred patterns.
    projected_potential : numpy.ndarray
        Projected potential of the static (mean) structure over the whole periodic cell,
        summed over the specimen thickness, shape ``(x, y)`` [V A].
    slice_potentials : numpy.ndarray
        The same split into ``parameters["num_slices"]`` equal slices from the entrance
        surface, shape ``(num_slices, x, y)`` [V A].
    potential_sampling : tuple of float
        Pixel size of the two potentials [A].
    scan_sampling : tuple of float
        Distance between probe positions along ``R_x`` and ``R_y`` [A].
    scan_start : tuple of float
        Position of the first probe position in the potential's frame [A].
    scan_extent : tuple of float
        ``scan_gpts * scan_sampling`` [A]: the scanned area starts at ``scan_start``.
    parameters : dict
        Everything needed to reconstruct and to reproduce (energy [eV], semiangle_cutoff
        [mrad], defocus [A], scan_step [A], thickness [A], num_slices, slice_thickness [A],
        dose_per_area [e/A^2], electrons_per_pattern, seed, angular_sampling [mrad],
        wavelength [A], defects, ...).
    atoms : ase.Atoms or None
        The static structure (before frozen phonons).
    cache_path : pathlib.Path or None
        The file this dataset was stored in or read from.
    """

    datacube: DataCube
    projected_potential: np.ndarray
    slice_potentials: np.ndarray
    potential_sampling: tuple[float, float]
    scan_sampling: tuple[float, float]
    scan_start: tuple[float, float]
    scan_extent: tuple[float, float]
    parameters: dict[str, Any]
    atoms: ase.Atoms | None = None
    cache_path: Path | None = field(default=None, repr=False)

    def reconstruction_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for py4DSTEM's ``MultislicePtychography`` (and ours).

        Returns
        -------
        dict
            ``energy`` [eV], ``semiangle_cutoff`` [mrad], ``defocus`` [A], ``num_slices`` and
            ``slice_thicknesses`` [A].
        """
        p = self.parameters
        return {
            "energy": p["energy"],
            "semiangle_cutoff": p["semiangle_cutoff"],
            "defocus": p["defocus"],
            "num_slices": p["num_slices"],
            "slice_thicknesses": p["slice_thickness"],
        }

    def scanned_potential(self, margin: float = 0.0, slices: bool = False) -> np.ndarray:
        """Ground truth cropped to the scanned area (the cell is periodic, so this wraps).

        Parameters
        ----------
        margin : float
            Extra border around the scanned area [A].
        slices : bool
            Crop ``slice_potentials`` instead of ``projected_potential``.

        Returns
        -------
        numpy.ndarray
            ``(x, y)`` or ``(num_slices, x, y)`` potential [V A] whose pixel ``(0, 0)`` lies at
            ``scan_start - margin``.
        """
        array = self.slice_potentials if slices else self.projected_potential[None]
        index = []
        for axis in range(2):
            s = self.potential_sampling[axis]
            first = round((self.scan_start[axis] - margin) / s)
            count = round((self.scan_extent[axis] + 2 * margin) / s)
            index.append(np.arange(first, first + count) % array.shape[axis + 1])
        out = array[:, index[0][:, None], index[1][None, :]]
        return out if slices else out[0]
