"""Options of the compressed data step: loss weights and the region-matching switches.

:class:`ProjectionWeights` holds the weights of the compressed loss (Eq. 13);
:class:`DataStepOptions` holds everything the data step needs besides the data (the
weights included). ``CompressedMultislicePtychography`` builds one ``DataStepOptions`` with
the object and replaces it (``dataclasses.replace``) at every ``reconstruct``; the pure
functions of :mod:`py4dstem_compressed.reconstruction.projection` take it as one argument.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

import numpy as np

__all__ = ["ENERGY_MATCHING", "DataStepOptions", "ProjectionWeights", "energy_matching"]

#: ``match_region_energy`` settings by name: which regions (BF, DF) are energy-matched.
ENERGY_MATCHING = {"dark_field": (False, True), True: (True, True), False: (False, False)}


@dataclass(frozen=True)
class ProjectionWeights:
    """Weights of the terms of the compressed loss (Eq. 13) used by the data step.

    Attributes
    ----------
    coefficient : float
        ``w_c`` of the coefficient loss (Eq. 9), in ``(0, 2)``. 1 replaces the
        predicted coefficients by the measured ones (the exact step of Eq. 9 with
        step size 1/2); smaller values under-relax.
    perpendicular : float
        ``w_p`` of the perpendicular-norm loss (Eq. 11), in ``[0, 1]``. 0 (default) leaves
        the prediction's component orthogonal to the masks as it is, 1 rescales it to the
        measured norm. Ignored when the data carry no perpendicular norms. The stored norms
        are still used where a region is energy-matched (:class:`DataStepOptions`,
        ``match_energy``).
    edge : float
        ``w_e`` of the edge loss (Eq. 10), in ``[0, 1]``: EDGE amplitudes are multiplied
        by ``1 - w_e`` (1 zeroes them).
    probe_aperture : float
        ``w_a`` of the probe-aperture loss (Eq. 12), in ``[0, 1]``: once per iteration
        the Fourier probe outside the aperture is multiplied by ``1 - w_a``.
    """

    coefficient: float = 1.0
    perpendicular: float = 0.0
    edge: float = 1.0
    probe_aperture: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = float(getattr(self, f.name))
            if not np.isfinite(value):
                valid = "(0, 2)" if f.name == "coefficient" else "[0, 1]"
                raise ValueError(f"{f.name}_weight must lie in {valid}, got {value!r}")
            object.__setattr__(self, f.name, value)
        if not 0.0 < self.coefficient < 2.0:
            raise ValueError(
                f"coefficient_weight must lie in (0, 2) (1 = full step), got {self.coefficient}"
            )
        for name in ("perpendicular", "edge", "probe_aperture"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}_weight must lie in [0, 1], got {value}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Keyword names accepted by :meth:`from_mapping` (``"<term>_weight"``)."""
        return tuple(f"{f.name}_weight" for f in fields(cls))

    @classmethod
    def from_mapping(cls, weights: Mapping[str, float] | None = None, **kwargs: float):
        """Build from ``{"edge_weight": 1.0, ...}`` (or ``{"edge": 1.0}``) plus keywords.

        Raises
        ------
        ValueError
            For a name that is not a weight, listing the valid names.
        """
        merged: dict[str, float] = {}
        for source in (weights or {}), kwargs:
            for key, value in source.items():
                name = key[: -len("_weight")] if key.endswith("_weight") else key
                if name not in {f.name for f in fields(cls)}:
                    raise ValueError(
                        f"unknown weight {key!r}; valid weights are {', '.join(cls.names())}"
                    )
                if value is not None:
                    merged[name] = value
        return cls(**merged)

    def as_dict(self) -> dict[str, float]:
        """``{"coefficient_weight": ..., ...}`` for metadata."""
        return {f"{key}_weight": value for key, value in asdict(self).items()}


def energy_matching(setting: bool | str) -> tuple[bool, bool]:
    """``match_region_energy`` (``"dark_field"``, True or False) as a (BF, DF) pair of bools.

    Raises
    ------
    ValueError
        For any other value.

    Warns
    -----
    FutureWarning
        For ``"auto"`` (the data-dependent rule of 0.1), read as ``"dark_field"``.
    """
    if isinstance(setting, str) and setting == "auto":
        warnings.warn(
            "match_region_energy='auto' (a data-dependent rule that flipped with the "
            "intensities' unit) is gone; using 'dark_field', the default",
            FutureWarning,
            stacklevel=4,
        )
        setting = "dark_field"
    if isinstance(setting, (bool, np.bool_)):
        setting = bool(setting)
    if not isinstance(setting, (bool, str)) or setting not in ENERGY_MATCHING:
        raise ValueError(
            f"match_region_energy must be 'dark_field', True or False, got {setting!r}"
        )
    return ENERGY_MATCHING[setting]


def _region_pair(name: str, value) -> tuple[bool, bool]:
    """A bool or a (BF, DF) pair of bools as a pair of Python bools."""
    pair = (value, value) if isinstance(value, (bool, np.bool_)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (bool, np.bool_)) for v in pair):
        raise ValueError(f"{name} must be True, False or a (BF, DF) pair of them, got {value!r}")
    return bool(pair[0]), bool(pair[1])


@dataclass(frozen=True)
class DataStepOptions:
    """Everything the compressed data step needs besides the data.

    Attributes
    ----------
    weights : ProjectionWeights
        Loss weights (Eq. 13); default ``ProjectionWeights()``.
    scale_nonnegative : bool
        Match the coefficients of *scalable* masks (non-negative with a support of their
        own: the uniform DF mask, bins) by rescaling the prediction on their support
        instead of adding to it (default True). With a complete pixel basis both give
        py4DSTEM's amplitude replacement.
    match_energy : (bool, bool)
        Per region (BF, DF): in amplitude mode with stored perpendicular norms, rescale a
        region made only of scalable masks to its measured energy ``sum c^2 + p^2``
        instead of to its coefficients. Default ``(False, True)``, the public
        ``match_region_energy="dark_field"``. A single bool applies to both regions.
    match_shape : (bool, bool)
        Per region (BF, DF), where energy is not matched: reshape such a region
        (``a -> a**gamma``, one Newton step per data step) so that its coefficients and its
        measured energy hold together. Default ``(False, False)``. A single bool applies to
        both regions.

    Raises
    ------
    TypeError
        When ``weights`` is not a :class:`ProjectionWeights`.
    ValueError
        When a switch is not a bool or a pair of bools.
    """

    weights: ProjectionWeights = field(default_factory=lambda: ProjectionWeights())
    scale_nonnegative: bool = True
    match_energy: tuple[bool, bool] = ENERGY_MATCHING["dark_field"]
    match_shape: tuple[bool, bool] = (False, False)

    def __post_init__(self) -> None:
        if not isinstance(self.weights, ProjectionWeights):
            raise TypeError(
                f"weights must be a ProjectionWeights, got {type(self.weights).__name__}"
            )
        if not isinstance(self.scale_nonnegative, (bool, np.bool_)):
            raise ValueError(
                f"scale_nonnegative must be True or False, got {self.scale_nonnegative!r}"
            )
        object.__setattr__(self, "scale_nonnegative", bool(self.scale_nonnegative))
        object.__setattr__(self, "match_energy", _region_pair("match_energy", self.match_energy))
        object.__setattr__(self, "match_shape", _region_pair("match_shape", self.match_shape))

    def as_metadata(self) -> dict:
        """Weights and switches as plain values for an EMD metadata group."""
        return {
            **self.weights.as_dict(),
            "match_region_energy": list(self.match_energy),
            "match_region_shape": bool(any(self.match_shape)),
        }
