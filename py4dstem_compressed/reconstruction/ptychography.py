"""py4DSTEM's ptychography classes on compressed data: the four twins.

Each class is a thin subclass of the py4DSTEM 0.14.18 class of the same name without
``Compressed`` (``SingleslicePtychography``, ``MultislicePtychography``,
``MixedstatePtychography``, ``MixedstateMultislicePtychography``). py4DSTEM's ``reconstruct``
loop is kept as it is: it slices one batch of measurement rows per step and hands it to the
Fourier-space step and to position correction. Here each row is a position's *compressed
measurement* (coefficients, perpendicular norms and descan shift, ``K + 4`` numbers instead
of ``Sx * Sy`` pixels). Everything but the constructors is shared, written once in
:class:`~py4dstem_compressed.reconstruction.compressed_base.CompressedPtychographyMixin`:
``preprocess`` (:mod:`~py4dstem_compressed.reconstruction.preprocess`) builds the rows without
ever holding per-pixel data for the scan, and the hooks of
:mod:`~py4dstem_compressed.reconstruction.data_step` call the pure functions of
:mod:`~py4dstem_compressed.reconstruction.projection`. Every py4DSTEM internal used is listed
in :mod:`py4dstem_compressed.reconstruction.py4dstem_internals`.

Mixed-state classes: the stored data describe the incoherent sum over the probe modes
(amplitude ``sqrt(sum_m |Psi_m|^2)`` or intensity ``sum_m |Psi_m|^2``); the data step acts on
that sum and scales every mode by the same per-pixel factor, as py4DSTEM's mixed-state
amplitude projection does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from py4DSTEM.process.phase import (
    MixedstateMultislicePtychography,
    MixedstatePtychography,
    MultislicePtychography,
    SingleslicePtychography,
)

from py4dstem_compressed.core.checks import check_integer
from py4dstem_compressed.core.emd import emd_class_name
from py4dstem_compressed.reconstruction.arguments import check_constructor_arguments
from py4dstem_compressed.reconstruction.compressed_base import (
    COMPRESSION_METADATA,
    CompressedPtychographyMixin,
)
from py4dstem_compressed.reconstruction.options import ProjectionWeights

__all__ = [
    "COMPRESSED_CLASSES",
    "COMPRESSION_METADATA",
    "CompressedMixedstateMultislicePtychography",
    "CompressedMixedstatePtychography",
    "CompressedMultislicePtychography",
    "CompressedSingleslicePtychography",
]

#: emdfile looks for EMD classes (here: the reconstructions) in modules that set this flag.
_emd_hook = True

_COMMON_PARAMETERS = """    datacube : CompressedDataCube or py4DSTEM.DataCube, optional
        Compressed data (basis embedded), or full data compressed in ``preprocess``
        onto ``basis`` with ``compression_mode``.
    basis : Basis, optional
        Masks for a ``DataCube`` input. For a ``CompressedDataCube`` it must be omitted
        or be the data's own basis.
    compression_mode : {"amplitude", "intensity"}, optional
        What the coefficients describe. Taken from a ``CompressedDataCube``; defaults to
        ``"amplitude"`` for a ``DataCube``.
    weights : mapping, optional
        Default loss weights for ``reconstruct`` (``{"edge_weight": 0.5}``); see
        :class:`~py4dstem_compressed.reconstruction.options.ProjectionWeights`.
    name : str
        EMD node name.
    **kwargs
        Passed to py4DSTEM's class (``semiangle_cutoff`` [mrad], ``defocus`` [Å] or other
        aberration symbols, ``vacuum_probe_intensity``, ``initial_probe_guess``,
        ``object_type``, ``positions_mask``: ``(Rx, Ry)`` bool, ``device``, ``storage``, ...).
"""

_RAISES = """    Raises
    ------
    ValueError
        Before any work, naming the argument, the value and the valid range: ``energy``
        not in (0, inf) [eV], {extra}``semiangle_cutoff`` not in (0, inf] [mrad] (or
        None), ``rolloff`` negative, or a loss weight out of its range; a ``DataCube``
        without ``basis``.
"""


def _document(cls: type) -> type:
    """Fill the shared parameter and error sections into ``cls.__doc__``."""
    cls.__doc__ = cls.__doc__.replace("{common}", _COMMON_PARAMETERS).replace(
        "{raises}", _RAISES.replace("{extra}", cls._raises_extra)
    )
    return cls


@_document
class CompressedSingleslicePtychography(CompressedPtychographyMixin, SingleslicePtychography):
    """Single-slice ptychography from data compressed onto orthonormal masks.

        Takes every argument of py4DSTEM's ``SingleslicePtychography`` plus the ones below,
        and keeps its chaining: ``preprocess().reconstruct().visualize()``.

        Parameters
        ----------
        energy : float
            Electron energy [eV].
    {common}
    {raises}"""

    _py4dstem_class = SingleslicePtychography
    _multislice_model = False
    _default_name = "compressed_ptychographic_reconstruction"
    _raises_extra = ""

    def __init__(
        self,
        energy: float,
        datacube: Any = None,
        basis: Any = None,
        compression_mode: str | None = None,
        weights: Mapping[str, float] | None = None,
        name: str = _default_name,
        **kwargs: Any,
    ) -> None:
        energy, _, _ = check_constructor_arguments(energy, None, None, kwargs, multislice=False)
        default_weights = ProjectionWeights.from_mapping(weights)
        super().__init__(energy=energy, datacube=datacube, name=name, **kwargs)
        self._setup_compressed(datacube, basis, compression_mode, default_weights)


@_document
class CompressedMultislicePtychography(CompressedPtychographyMixin, MultislicePtychography):
    """Multislice ptychography from data compressed onto orthonormal masks.

        Takes every argument of py4DSTEM's ``MultislicePtychography`` plus the ones below,
        and keeps its chaining: ``preprocess().reconstruct().visualize()``.

        Parameters
        ----------
        energy : float
            Electron energy [eV].
        num_slices : int
            Number of slices of the multislice forward model.
        slice_thicknesses : float or sequence of float
            Slice thicknesses [Å].
    {common}
    {raises}"""

    _py4dstem_class = MultislicePtychography
    _multislice_model = True
    _default_name = "compressed_multislice_ptychographic_reconstruction"
    _raises_extra = (
        "``num_slices`` not a whole number >= 1, a slice thickness not in (0, inf) [Å], "
    )

    def __init__(
        self,
        energy: float,
        num_slices: int,
        slice_thicknesses: float | Sequence[float],
        datacube: Any = None,
        basis: Any = None,
        compression_mode: str | None = None,
        weights: Mapping[str, float] | None = None,
        name: str = _default_name,
        **kwargs: Any,
    ) -> None:
        energy, num_slices, slice_thicknesses = check_constructor_arguments(
            energy, num_slices, slice_thicknesses, kwargs
        )
        default_weights = ProjectionWeights.from_mapping(weights)
        super().__init__(
            energy=energy,
            num_slices=num_slices,
            slice_thicknesses=slice_thicknesses,
            datacube=datacube,
            name=name,
            **kwargs,
        )
        self._setup_compressed(datacube, basis, compression_mode, default_weights)


@_document
class CompressedMixedstatePtychography(CompressedPtychographyMixin, MixedstatePtychography):
    """Mixed-state (partially coherent) single-slice ptychography from compressed data.

        Takes every argument of py4DSTEM's ``MixedstatePtychography`` plus the ones below, and
        keeps its chaining: ``preprocess().reconstruct().visualize()``; ``reconstruct`` takes
        py4DSTEM's mixed-state keywords (``orthogonalize_probe``, ``num_probes_fit_aberrations``).
        The stored data describe the incoherent sum over the probe modes; the data step acts on
        ``sqrt(sum_m |Psi_m|^2)`` (or ``sum_m |Psi_m|^2``) and scales every mode by the same
        per-pixel factor.

        Parameters
        ----------
        energy : float
            Electron energy [eV].
        num_probes : int, optional
            Number of probe modes, >= 1; needed unless ``initial_probe_guess`` is an
            ``(N, Sx, Sy)`` array (then N).
    {common}
    {raises}"""

    _py4dstem_class = MixedstatePtychography
    _multislice_model = False
    _default_name = "compressed_mixed-state_ptychographic_reconstruction"
    _raises_extra = "``num_probes`` not a whole number >= 1, "

    def __init__(
        self,
        energy: float,
        datacube: Any = None,
        num_probes: int | None = None,
        basis: Any = None,
        compression_mode: str | None = None,
        weights: Mapping[str, float] | None = None,
        name: str = _default_name,
        **kwargs: Any,
    ) -> None:
        energy, _, _ = check_constructor_arguments(energy, None, None, kwargs, multislice=False)
        num_probes = _check_num_probes(num_probes, kwargs)
        default_weights = ProjectionWeights.from_mapping(weights)
        super().__init__(
            energy=energy, num_probes=num_probes, datacube=datacube, name=name, **kwargs
        )
        self._setup_compressed(datacube, basis, compression_mode, default_weights)


@_document
class CompressedMixedstateMultislicePtychography(
    CompressedPtychographyMixin, MixedstateMultislicePtychography
):
    """Mixed-state (partially coherent) multislice ptychography from compressed data.

        Takes every argument of py4DSTEM's ``MixedstateMultislicePtychography`` plus the ones
        below, and keeps its chaining: ``preprocess().reconstruct().visualize()``;
        ``reconstruct`` takes py4DSTEM's mixed-state keywords (``orthogonalize_probe``, ...).
        The stored data describe the incoherent sum over the probe modes; the data step acts on
        ``sqrt(sum_m |Psi_m|^2)`` (or ``sum_m |Psi_m|^2``) and scales every mode by the same
        per-pixel factor.

        Parameters
        ----------
        energy : float
            Electron energy [eV].
        num_slices : int
            Number of slices of the multislice forward model.
        slice_thicknesses : float or sequence of float
            Slice thicknesses [Å].
        num_probes : int, optional
            Number of probe modes, >= 1; needed unless ``initial_probe_guess`` is an
            ``(N, Sx, Sy)`` array (then N).
    {common}
    {raises}"""

    _py4dstem_class = MixedstateMultislicePtychography
    _multislice_model = True
    _default_name = "compressed_mixed-state_multislice_ptychographic_reconstruction"
    _raises_extra = (
        "``num_slices`` or ``num_probes`` not a whole number >= 1, a slice thickness not in "
        "(0, inf) [Å], "
    )

    def __init__(
        self,
        energy: float,
        num_slices: int,
        slice_thicknesses: float | Sequence[float],
        num_probes: int | None = None,
        datacube: Any = None,
        basis: Any = None,
        compression_mode: str | None = None,
        weights: Mapping[str, float] | None = None,
        name: str = _default_name,
        **kwargs: Any,
    ) -> None:
        energy, num_slices, slice_thicknesses = check_constructor_arguments(
            energy, num_slices, slice_thicknesses, kwargs
        )
        num_probes = _check_num_probes(num_probes, kwargs)
        default_weights = ProjectionWeights.from_mapping(weights)
        super().__init__(
            energy=energy,
            num_slices=num_slices,
            slice_thicknesses=slice_thicknesses,
            num_probes=num_probes,
            datacube=datacube,
            name=name,
            **kwargs,
        )
        self._setup_compressed(datacube, basis, compression_mode, default_weights)


def _check_num_probes(num_probes: Any, kwargs: dict) -> int | None:
    """``num_probes`` as an int >= 1, or None when an ``(N, Sx, Sy)`` probe guess sets it."""
    guess = kwargs.get("initial_probe_guess")
    if num_probes is None and (guess is None or not hasattr(guess, "shape")):
        raise ValueError(
            "num_probes is needed (a whole number >= 1, e.g. num_probes=3) unless "
            "initial_probe_guess is an (N, Sx, Sy) array of N probe modes"
        )
    return check_integer("num_probes", num_probes, 1, optional=True)


#: The compressed twins of py4DSTEM's ptychography classes.
COMPRESSED_CLASSES = (
    CompressedSingleslicePtychography,
    CompressedMultislicePtychography,
    CompressedMixedstatePtychography,
    CompressedMixedstateMultislicePtychography,
)

# Files name the class "<Class> (written by py4dstem-compressed: ...)" so that reading without
# the plugin says what to do; register that name so emdfile finds the class once imported.
for _cls in COMPRESSED_CLASSES:
    globals()[emd_class_name(_cls)] = _cls
del _cls
