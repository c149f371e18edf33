"""Parameter sets of the simulated 4D-STEM datasets (:mod:`.datasets`).

A :class:`SimulationPreset` fixes the microscope, the scan, the detector and the specimen of
one simulation; the named presets are ``"micro"`` (unit tests), ``"tiny"`` (the demo,
seconds), ``"small"`` (benchmarks) and ``"paper"`` (closer to the source paper: 60 kV, 30 mrad,
larger scan and detector). Any field can be replaced with :func:`get_preset`'s keyword overrides.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["PRESETS", "SimulationPreset", "get_preset"]


@dataclass(frozen=True)
class SimulationPreset:
    """Microscope, scan, detector and specimen parameters of one simulated dataset.

    The specimen is a periodic cell of about ``field_of_view`` x ``field_of_view`` [A]; the
    probe sees the whole cell, so the angular sampling of the detector is
    ``detector_binning * wavelength / cell_extent`` [rad] and the diffraction patterns have
    ``detector_gpts`` x ``detector_gpts`` pixels reaching ``detector_gpts / 2`` such pixels from
    the centre (several times the bright-field radius, so dark-field signal is recorded).

    Attributes
    ----------
    name : str
        Label used in cache file names.
    energy : float
        Beam energy [eV].
    semiangle_cutoff : float
        Probe convergence semi-angle [mrad].
    defocus : float
        Probe defocus [A], py4DSTEM's and abTEM's convention (``defocus = -C10``; positive is
        underfocus, the probe's crossover lies below the entrance surface).
    scan_gpts : tuple of int
        Number of probe positions along the first (py4DSTEM ``R_x``) and second scan axis.
    scan_step : float
        Distance between neighbouring probe positions [A] (both axes).
    detector_gpts : int
        Side of the square diffraction patterns [px].
    detector_binning : int
        Simulated pixels binned into one detector pixel (per axis).
    field_of_view : float
        Minimum side of the (square, periodic) specimen cell [A]; must hold the scan.
    thickness : float
        Specimen thickness for ``kind="crystal"`` [A] (rounded to whole unit cells); ignored
        for the monolayer of ``kind="2d"``.
    num_slices : int
        Number of slices of the ground truth ``slice_potentials``, i.e. of the reconstruction.
    simulation_slice_thickness : float
        Slice thickness of the multislice simulation [A] (rounded to divide the cell evenly).
    max_potential_sampling : float
        Coarsest real-space sampling of the simulation [A]; the grid is also always fine
        enough that abTEM's anti-aliasing aperture lies outside the detector.
    truth_sampling : float
        Pixel size of the ground-truth potentials [A].
    num_frozen_phonons : int
        Frozen-phonon configurations averaged (0: static lattice).
    phonon_sigma : float
        Standard deviation of the thermal displacements [A].
    source_size : float
        Standard deviation of the Gaussian effective source [A] (0: coherent). Partial spatial
        coherence is modelled by simulating the scan :attr:`source_oversampling` times finer,
        blurring the 4D data over those positions and keeping every n-th one.
    descan_px : float
        Linear descan drift of the diffraction pattern over the scan [detector px]: the
        pattern of scan position ``j`` (row-major) is shifted by ``descan_px * j / (N - 1)``
        along the detector diagonal (``/ sqrt(2)`` along each axis), before shot noise is
        drawn, as a drifting descan does on a real detector (0: no drift).
    num_vacancies : int
        Atoms removed (cation vacancies in the crystal, S vacancies in MoS2).
    num_substitutions : int
        Atoms replaced by heavier ones (Sr -> Ba in SrTiO3, Mo -> W in MoS2).
    vacuum : float
        Vacuum above and below the monolayer for ``kind="2d"`` [A].
    structure_seed : int
        Seed of the defect positions (independent of the noise and phonon ``seed``).
    """

    name: str
    energy: float
    semiangle_cutoff: float
    defocus: float
    scan_gpts: tuple[int, int]
    scan_step: float
    detector_gpts: int
    field_of_view: float
    thickness: float
    num_slices: int
    detector_binning: int = 1
    simulation_slice_thickness: float = 2.0
    max_potential_sampling: float = 0.15
    truth_sampling: float = 0.05
    num_frozen_phonons: int = 0
    phonon_sigma: float = 0.08
    source_size: float = 0.0
    descan_px: float = 0.0
    num_vacancies: int = 2
    num_substitutions: int = 1
    vacuum: float = 2.0
    structure_seed: int = 0

    def __post_init__(self) -> None:
        gpts = tuple(int(n) for n in self.scan_gpts)
        if len(gpts) != 2 or min(gpts) < 1:
            raise ValueError(f"scan_gpts must be two positive integers, got {self.scan_gpts}")
        object.__setattr__(self, "scan_gpts", gpts)
        positive = (
            "energy",
            "semiangle_cutoff",
            "scan_step",
            "detector_gpts",
            "detector_binning",
            "field_of_view",
            "thickness",
            "num_slices",
            "simulation_slice_thickness",
            "max_potential_sampling",
            "truth_sampling",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("num_frozen_phonons", "num_vacancies", "num_substitutions", "vacuum"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.source_size < 0 or self.phonon_sigma < 0:
            raise ValueError("source_size and phonon_sigma must be >= 0")
        if not math.isfinite(self.descan_px):
            raise ValueError(f"descan_px must be finite, got {self.descan_px}")
        if self.detector_gpts < 8:
            raise ValueError(f"detector_gpts must be at least 8, got {self.detector_gpts}")
        extent = max(self.scan_gpts) * self.scan_step
        if extent > self.field_of_view:
            raise ValueError(
                f"the scan ({extent:.2f} A) does not fit in the field of view "
                f"({self.field_of_view:.2f} A)"
            )

    @property
    def source_oversampling(self) -> int:
        """Scan positions simulated per recorded one along each axis for the finite source.

        Partial spatial coherence is the incoherent average over probe positions spread by the
        effective source; sampled at the recorded scan step (often coarser than the source)
        that average would be wrong, so the scan is simulated ``n`` times finer, blurred, and
        every ``n``-th position kept. ``n`` makes the fine step at most
        ``source_size / SOURCE_STEPS_PER_SIGMA``; 1 for a coherent source.
        """
        if self.source_size <= 0:
            return 1
        wanted = math.ceil(SOURCE_STEPS_PER_SIGMA * self.scan_step / self.source_size)
        return max(1, min(wanted, MAX_SOURCE_OVERSAMPLING))

    @property
    def scan_extent(self) -> tuple[float, float]:
        """Scanned area ``(R_x, R_y)`` [A]: ``scan_gpts * scan_step``."""
        return (self.scan_gpts[0] * self.scan_step, self.scan_gpts[1] * self.scan_step)

    def replace(self, **overrides: object) -> SimulationPreset:
        """Return a copy with some fields replaced (unknown names raise a TypeError)."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown preset field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        """All fields as a JSON-serialisable dict."""
        out = dataclasses.asdict(self)
        out["scan_gpts"] = list(self.scan_gpts)
        return out


#: Fine scan steps per standard deviation of the effective source: a Gaussian sampled at half
#: its sigma sums to its integral within 1e-6, so the blur over positions is an accurate average
SOURCE_STEPS_PER_SIGMA = 2
#: At most this many fine positions per recorded one along each axis (the simulation costs its
#: square); a source much smaller than the scan step is then averaged at a coarser step
MAX_SOURCE_OVERSAMPLING = 8

PRESETS: dict[str, SimulationPreset] = {
    # smaller than "tiny", for tests: 8 x 8 positions, 32 x 32 px, two unit cells wide and thick
    "micro": SimulationPreset(
        name="micro",
        energy=80e3,
        semiangle_cutoff=20.0,
        defocus=50.0,
        scan_gpts=(8, 8),
        scan_step=0.5,
        detector_gpts=32,
        field_of_view=7.5,
        thickness=7.8,
        num_slices=2,
        max_potential_sampling=0.25,
        truth_sampling=0.1,
        num_vacancies=1,
        num_substitutions=1,
    ),
    # the demo's scale: 16 x 16 positions, 48 x 48 px, 4 unit cells thick
    "tiny": SimulationPreset(
        name="tiny",
        energy=80e3,
        semiangle_cutoff=20.0,
        defocus=50.0,
        scan_gpts=(16, 16),
        scan_step=0.5,
        detector_gpts=48,
        field_of_view=15.0,
        thickness=15.0,
        num_slices=4,
    ),
    # benchmark scale: 24 x 24 positions, 128 x 128 px, 5 unit cells (~2 nm) thick, 4 slices
    # (thin enough that 4 reconstruction slices describe the channelling)
    "small": SimulationPreset(
        name="small",
        energy=80e3,
        semiangle_cutoff=25.0,
        defocus=100.0,
        scan_gpts=(24, 24),
        scan_step=0.45,
        detector_gpts=128,
        field_of_view=19.0,
        thickness=19.5,
        num_slices=4,
        max_potential_sampling=0.1,
        num_vacancies=3,
        num_substitutions=2,
    ),
    # closer to the paper: 60 kV, 30 mrad, 48 x 48 positions, 192 x 192 px, ~4 nm, 4 phonon
    # configurations
    "paper": SimulationPreset(
        name="paper",
        energy=60e3,
        semiangle_cutoff=30.0,
        defocus=100.0,
        scan_gpts=(48, 48),
        scan_step=0.4,
        detector_gpts=192,
        field_of_view=31.0,
        thickness=39.0,
        num_slices=8,
        max_potential_sampling=0.08,
        num_frozen_phonons=4,
        num_vacancies=6,
        num_substitutions=4,
    ),
}


def get_preset(preset: str | SimulationPreset = "tiny", **overrides: object) -> SimulationPreset:
    """Look up a named preset (or take a given one) and replace fields.

    Parameters
    ----------
    preset : str or SimulationPreset
        ``"micro"`` (tests), ``"tiny"``, ``"small"``, ``"paper"`` or a preset instance.
    **overrides
        Fields to replace, e.g. ``scan_gpts=(8, 8), detector_gpts=32``.

    Returns
    -------
    SimulationPreset
        The validated preset.
    """
    if isinstance(preset, SimulationPreset):
        base = preset
    else:
        try:
            base = PRESETS[preset]
        except KeyError:
            raise ValueError(
                f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
            ) from None
    return base.replace(**overrides) if overrides else base
