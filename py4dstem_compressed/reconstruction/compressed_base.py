"""What the four compressed ptychography classes share: everything but the constructor.

:class:`CompressedPtychographyMixin` sits in front of a py4DSTEM ptychography class
(``SingleslicePtychography``, ``MultislicePtychography``, ``MixedstatePtychography`` or
``MixedstateMultislicePtychography``, py4DSTEM 0.14.18) and brings the compressed
``preprocess`` (:mod:`~py4dstem_compressed.reconstruction.preprocess`), the data step and
position correction (:mod:`~py4dstem_compressed.reconstruction.data_step`), ``reconstruct``
with the weights of the compressed loss, the displays and EMD saving. The concrete classes
(:mod:`~py4dstem_compressed.reconstruction.ptychography`) only add their constructor and
three class attributes:

* ``_py4dstem_class``: the py4DSTEM class they subclass (its ``reconstruct`` keywords are
  the accepted ones);
* ``_multislice_model``: whether the object has slices (initial object and propagators);
* ``_default_name``: the EMD node name.

Mixed-state classes hand the hooks exit waves of shape ``(B, M, Sx, Sy)`` (M probe
modes); the data step reads that shape and acts on the incoherent sum over modes.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
from emdfile import Metadata, _read_metadata

from py4dstem_compressed.core.checks import check_integer
from py4dstem_compressed.core.emd import stamp_class_name
from py4dstem_compressed.reconstruction.arguments import (
    check_reconstruct_arguments,
    resolve_basis,
)
from py4dstem_compressed.reconstruction.data_selection import DataSelectionMixin
from py4dstem_compressed.reconstruction.data_step import DataStepMixin
from py4dstem_compressed.reconstruction.field_of_view import FieldOfViewMixin
from py4dstem_compressed.reconstruction.options import (
    DataStepOptions,
    ProjectionWeights,
    energy_matching,
)
from py4dstem_compressed.reconstruction.preprocess import CompressedPreprocessMixin

__all__ = ["COMPRESSION_METADATA", "CompressedPtychographyMixin"]

#: Name of the metadata group holding the compression settings of a saved reconstruction.
COMPRESSION_METADATA = "compression_metadata"


class CompressedPtychographyMixin(
    CompressedPreprocessMixin,
    DataSelectionMixin,
    FieldOfViewMixin,
    DataStepMixin,
):
    """Compressed preprocess, data step, ``reconstruct``, displays and saving.

    Put it first in the bases of a subclass of a py4DSTEM ptychography class, and call
    :meth:`_setup_compressed` at the end of the subclass' ``__init__``.
    """

    #: the py4DSTEM class the concrete class subclasses (set by each concrete class)
    _py4dstem_class: type
    #: whether the object has slices: initial object per slice, Fresnel propagators
    _multislice_model: bool = False
    #: EMD node name when none is given
    _default_name: str = "compressed_ptychographic_reconstruction"

    def _setup_compressed(
        self,
        datacube: Any,
        basis: Any,
        compression_mode: str | None,
        default_weights: ProjectionWeights,
    ) -> None:
        """Attach basis, compression mode and loss weights (after py4DSTEM's ``__init__``)."""
        #: the positions the user asked for; preprocess() drops those without a pattern
        self._requested_positions_mask = self._positions_mask
        self._basis, self._compression_mode = resolve_basis(datacube, basis, compression_mode)
        self._default_weights = default_weights
        #: what the data step uses: the constructor's weights until reconstruct() replaces it
        self._data_step_options = DataStepOptions(weights=default_weights)

    # ------------------------------------------------------------------ reconstruct
    def reconstruct(
        self,
        num_iter: int = 8,
        reconstruction_method: str = "gradient-descent",
        coefficient_weight: float | None = None,
        perpendicular_weight: float | None = None,
        edge_weight: float | None = None,
        probe_aperture_weight: float | None = None,
        weights: Mapping[str, float] | None = None,
        scale_nonnegative_masks: bool = True,
        match_region_energy: bool | str = "dark_field",
        match_region_shape: bool = False,
        **kwargs: Any,
    ):
        """Reconstruct object and probe from the compressed measurements.

        Accepts every keyword of the py4DSTEM class' ``reconstruct``
        (``max_batch_size``, ``step_size``, ``fix_positions``, ``seed_random``,
        ``progress_bar``, ...) plus the weights of the compressed loss (Eq. 13):

        Parameters
        ----------
        num_iter : int
            Number of iterations.
        reconstruction_method : str
            ``"gradient-descent"`` (default) or a projection-set method (``"DM"``,
            ``"RAAR"``, ``"RRR"``, ``"SUPERFLIP"``, ``"GPM"`` as in py4DSTEM). For those
            the data step is the projection onto the amplitudes consistent with the
            stored data (exact with all weights 1, except for the final clip at 0).
        coefficient_weight : float, optional
            ``w_c`` (Eq. 9), in (0, 2); default 1 (full coefficient replacement).
        perpendicular_weight : float, optional
            ``w_p`` (Eq. 11), in [0, 1]; default 0 (the orthogonal part of the prediction
            is left as it is). No effect on data compressed without perpendicular norms.
        edge_weight : float, optional
            ``w_e`` (Eq. 10), in [0, 1]; default 1 (the prediction is zeroed where the
            detector measured nothing).
        probe_aperture_weight : float, optional
            ``w_a`` (Eq. 12), in [0, 1]; default 0. Once per iteration the Fourier probe
            beyond ``semiangle_cutoff`` is multiplied by ``1 - w_a``.
        weights : mapping, optional
            The same weights as a mapping, e.g. ``{"edge_weight": 0.5}``. Explicit
            keywords win. Unknown names raise ``ValueError``.
        scale_nonnegative_masks : bool
            Match the coefficients of non-negative masks with a support of their own
            (the uniform DF mask, bins) by rescaling the prediction on that support
            instead of adding to it; default True. With a complete pixel basis both give
            py4DSTEM's amplitude replacement.
        match_region_energy : {"dark_field", True, False}
            Which regions are rescaled to their measured energy ``sum c^2 + p^2`` (the
            region's total intensity) instead of being matched to their amplitude
            coefficients alone: ``"dark_field"`` (default) the DF region, True both, False
            neither. A region of one uniform mask or bins is rescaled; a region of several
            signed masks (e.g. ``num_df=16``) is multiplied by ``exp(M^T lam)`` towards its
            coefficients, projected onto the stored coefficients and perpendicular norm as
            far as the shot noise allows (fully on noise-free data), then rescaled (see
            ``region_matching.match_signed_region``). Acts
            in amplitude mode on data with perpendicular norms; does not depend on the data.
            ``"auto"`` (0.1) is read as ``"dark_field"`` with a FutureWarning; any other
            value raises ``ValueError``.
        match_region_shape : bool
            Where a region's energy is not matched (amplitude mode, perpendicular norms
            stored): reshape the prediction on it, ``a -> a**gamma`` with one Newton step
            for ``gamma`` per data step, so that its coefficients and its measured energy
            hold together. Default False; a non-bool raises ``ValueError``.
        **kwargs
            py4DSTEM's ``reconstruct`` keywords.

        Notes
        -----
        The regularisers of Eq. 13 are py4DSTEM's own object constraints:
        ``w_tv`` ↔ ``tv_denoise_weight`` (single-slice classes) or
        ``tv_denoise_weight_chambolle`` (multislice; or ``tv_denoise_weights=[w_z, w_r]``,
        Chambolle / pylops proximal TV steps applied once per iteration), and
        ``w_l1`` ↔ ``shrinkage_rad`` [rad]: subtracting ``shrinkage_rad`` from the
        potential and clipping at 0 (``object_positivity``) is the proximal step of the
        L1 norm of the (positive) phase with step ``shrinkage_rad``.

        The reported error (``self.error_iterations``) is the coefficient loss (Eq. 9)
        divided by the mean pattern intensity and the number of patterns, as py4DSTEM
        normalises its pixel error: with a complete basis the two are equal. In intensity
        mode the loss is additionally divided by the mean pattern intensity.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Before any work, naming the argument, the value and the valid range:
            ``num_iter`` or ``max_batch_size`` not a whole number >= 1; ``step_size``,
            ``positions_step_size`` or ``gaussian_filter_sigma`` [Å] not in (0, inf);
            ``max_position_update_distance`` / ``max_position_total_distance`` [Å] not in
            (0, inf); ``shrinkage_rad`` negative; ``normalization_min`` not in [0, 1]; a
            loss weight out of its range (NaN and inf included); an unknown keyword.
        """
        unknown = set(kwargs) - _reconstruct_arguments(self._py4dstem_class)
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ValueError(
                f"unknown reconstruct argument(s) {names}; the compressed-loss weights are "
                f"{', '.join(ProjectionWeights.names())} (other keywords are py4DSTEM's)"
            )
        num_iter = check_integer("num_iter", num_iter, 1)
        check_reconstruct_arguments(kwargs, self._py4dstem_class)
        merged = dict(self._default_weights.as_dict())
        merged.update(weights or {})
        new_weights = ProjectionWeights.from_mapping(
            merged,
            coefficient_weight=coefficient_weight,
            perpendicular_weight=perpendicular_weight,
            edge_weight=edge_weight,
            probe_aperture_weight=probe_aperture_weight,
        )
        if not self._preprocessed or not hasattr(self, "_operator"):
            raise ValueError("run preprocess() before reconstruct()")
        if not isinstance(match_region_shape, (bool, np.bool_)):
            raise ValueError(
                f"match_region_shape must be True or False, got {match_region_shape!r}"
            )
        self._data_step_options = dataclasses.replace(
            self._data_step_options,
            weights=new_weights,
            scale_nonnegative=bool(scale_nonnegative_masks),
            match_energy=energy_matching(match_region_energy),
            match_shape=bool(match_region_shape),  # acts where energy is not matched
        )
        if kwargs.get("virtual_detector_masks") is not None:
            raise NotImplementedError(
                "virtual_detector_masks is not supported: compressed data are already "
                "projected onto the basis masks"
            )
        if new_weights.probe_aperture > 0:
            self._outside_aperture = self._probe_outside_aperture()
        # py4DSTEM's loop slices its batches from _amplitudes: bind the measurement rows
        # there while it runs, and only then (see py4dstem_internals)
        self._amplitudes = self._compressed_rows
        try:
            return super().reconstruct(
                num_iter=num_iter, reconstruction_method=reconstruction_method, **kwargs
            )
        finally:
            del self._amplitudes

    @property
    def data_step_options(self) -> DataStepOptions:
        """The data step's weights and switches (those of the last ``reconstruct`` call)."""
        return self._data_step_options

    # ------------------------------------------------- inherited per-pixel methods
    def cross_correlate_amplitudes_to_probe_aperture(self, *args, **kwargs):
        """Not available: py4DSTEM's version shifts per-pixel amplitudes in place.

        Raises
        ------
        NotImplementedError
            Always: compressed data hold mask coefficients, not pixels.
        """
        raise _pixel_method_error(
            "cross_correlate_amplitudes_to_probe_aperture",
            "measured patterns cannot be shifted after compression; the fitted descan is "
            "applied to the predictions instead (preprocess fit_function / force_com_shifts)",
        )

    def slim_preprocess(self, *args, **kwargs):
        """Not available: py4DSTEM's version takes per-pixel corner-centred amplitudes.

        Raises
        ------
        NotImplementedError
            Always: use ``preprocess()`` on a ``CompressedDataCube``.
        """
        raise _pixel_method_error(
            "slim_preprocess",
            "build a CompressedDataCube (pc.compress or "
            "CompressedDataCube.from_virtual_images) and call preprocess()",
        )

    # ------------------------------------------------------------------ display
    def show_basis(self, **kwargs):
        """Plot the basis masks (detector frame). Keywords go to ``Basis.show``."""
        return self._basis.show(**kwargs)

    def show_coefficients(self, indices=None, ncols: int = 6, cmap: str = "viridis"):
        """Maps over the scan of stored coefficients and perpendicular norms.

        Parameters
        ----------
        indices : sequence of int, optional
            Masks to show (default: the first 12).
        ncols : int
            Panels per row.
        cmap : str
            Matplotlib colour map.

        Returns
        -------
        matplotlib.figure.Figure
        """
        from py4dstem_compressed.storage.plots import show_coefficient_maps

        data = self._compressed_data_or_none()
        if data is None:
            raise ValueError(
                "no compressed data attached (e.g. a reconstruction read from file); "
                "attach_datacube() the CompressedDataCube first"
            )
        return show_coefficient_maps(data, indices=indices, ncols=ncols, cmap=cmap)

    # -------------------------------------------------------------------- saving
    def to_h5(self, group):
        """Write the reconstruction with its basis, loss weights and compression mode."""
        basis = self._basis
        basis_name = basis.name if basis is not None else None
        self.metadata = Metadata(
            name=COMPRESSION_METADATA,
            data={
                "compression_mode": self._compression_mode,
                **self._data_step_options.as_metadata(),
            },
        )
        self._compression_basis = basis
        try:
            super().to_h5(group)
            stamp_class_name(group[self.name], type(self))
        finally:
            del self._compression_basis
            if basis is not None:
                basis.name = basis_name

    @classmethod
    def _get_constructor_args(cls, group):
        """Constructor arguments of a stored reconstruction (py4DSTEM's plus ours)."""
        kwargs = super()._get_constructor_args(group)
        settings = dict(_read_compression_metadata(group))
        nodes = cls._get_emd_attr_data(cls, group)
        kwargs["basis"] = nodes.get("_compression_basis")
        kwargs["compression_mode"] = settings.pop("compression_mode")
        settings.pop("match_region_shape", None)
        settings.pop("match_region_energy", None)  # a record of the last reconstruct() call
        kwargs["weights"] = settings
        kwargs["name"] = kwargs.get("name") or cls._default_name
        return kwargs


def _pixel_method_error(name: str, instead: str) -> NotImplementedError:
    """The error of an inherited py4DSTEM method that needs per-pixel patterns."""
    return NotImplementedError(
        f"{name} works on per-pixel diffraction amplitudes, which compressed data do not "
        f"hold (each position stores mask coefficients); {instead}"
    )


def _read_compression_metadata(group) -> dict:
    """Read the compression metadata of a stored reconstruction."""
    metadata = _read_metadata(group, COMPRESSION_METADATA)
    if not metadata:
        raise ValueError(
            "this group holds no compression metadata: was it written by "
            "a py4dstem-compressed ptychography class? (run `import py4dstem_compressed` "
            "before reading)"
        )
    return dict(metadata._params)


@functools.cache
def _reconstruct_arguments(py4dstem_class: type) -> frozenset[str]:
    """Keyword names of a py4DSTEM class' ``reconstruct``."""
    return frozenset(inspect.signature(py4dstem_class.reconstruct).parameters)
