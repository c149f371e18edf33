"""``CompressedMultislicePtychography``: py4DSTEM multislice ptychography from mask coefficients.

A thin subclass of py4DSTEM 0.14.18's ``MultislicePtychography``. py4DSTEM's ``reconstruct``
loop is kept as it is: it slices one batch of measurement rows per step and hands it to the
Fourier-space step and to position correction. Here each row is a position's *compressed
measurement* (coefficients, perpendicular norms and descan shift, ``K + 4`` numbers instead
of ``Sx * Sy`` pixels), and the hooks that read them are overridden to call the pure
functions of :mod:`py4dstem_compressed.reconstruction.projection`. ``preprocess`` (in
:mod:`py4dstem_compressed.reconstruction.preprocess`) builds the rows without ever holding
per-pixel data for the scan. Every py4DSTEM internal used is listed in
:mod:`py4dstem_compressed.reconstruction.py4dstem_internals`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from emdfile import Metadata, _read_metadata
from py4DSTEM import DataCube
from py4DSTEM.process.phase import MultislicePtychography
from py4DSTEM.process.phase.utils import copy_to_device, generate_batches
from py4DSTEM.process.utils import electron_wavelength_angstrom

from py4dstem_compressed.core.backend import check_mode, measured_from_amplitude
from py4dstem_compressed.core.checks import check_integer, check_real
from py4dstem_compressed.core.emd import emd_class_name, stamp_class_name
from py4dstem_compressed.reconstruction.options import (
    DataStepOptions,
    ProjectionWeights,
    energy_matching,
)
from py4dstem_compressed.reconstruction.position_correction import coefficient_position_update
from py4dstem_compressed.reconstruction.preprocess import CompressedPreprocessMixin
from py4dstem_compressed.reconstruction.projection import (
    descan_ramp,
    fourier_projection,
    mask_coefficients,
    probe_aperture_step,
)

__all__ = ["CompressedMultislicePtychography"]

#: emdfile looks for EMD classes (here: the reconstruction) in modules that set this flag.
_emd_hook = True

#: Name of the metadata group holding the compression settings of a saved reconstruction.
COMPRESSION_METADATA = "compression_metadata"
_PY4DSTEM_RECONSTRUCT_ARGS = frozenset(
    inspect.signature(MultislicePtychography.reconstruct).parameters
)


class CompressedMultislicePtychography(CompressedPreprocessMixin, MultislicePtychography):
    """Multislice ptychography from data compressed onto orthonormal masks.

    Takes every argument of py4DSTEM's ``MultislicePtychography`` (``energy`` [eV],
    ``num_slices``, ``slice_thicknesses`` [Å], ``semiangle_cutoff`` [mrad], ``defocus``
    [Å], ``vacuum_probe_intensity``, ``device``, ``storage``, ...) plus the ones below, and
    keeps its chaining: ``preprocess().reconstruct().visualize()``.

    Parameters
    ----------
    energy : float
        Electron energy [eV].
    num_slices : int
        Number of slices of the multislice forward model.
    slice_thicknesses : float or sequence of float
        Slice thicknesses [Å].
    datacube : CompressedDataCube or py4DSTEM.DataCube, optional
        Compressed data (basis embedded), or full data compressed in ``preprocess``
        onto ``basis`` with ``compression_mode``.
    basis : Basis, optional
        Masks for a ``DataCube`` input. For a ``CompressedDataCube`` it must be omitted
        or be the data's own basis.
    compression_mode : {"amplitude", "intensity"}, optional
        What the coefficients describe. Taken from a ``CompressedDataCube``; defaults to
        ``"amplitude"`` for a ``DataCube``.
    weights : mapping, optional
        Default loss weights for :meth:`reconstruct` (``{"edge_weight": 0.5}``); see
        :class:`~py4dstem_compressed.reconstruction.projection.ProjectionWeights`.
    name : str
        EMD node name.
    **kwargs
        Passed to ``MultislicePtychography`` (including aberration symbols such as
        ``defocus`` [Å] or ``C10``, ``semiangle_cutoff`` [mrad] and ``positions_mask``:
        ``(Rx, Ry)`` bool, the scan positions to reconstruct from).

    Raises
    ------
    ValueError
        Before any work, naming the argument, the value and the valid range: ``energy``
        not in (0, inf) [eV], ``num_slices`` not a whole number >= 1, a slice thickness
        not in (0, inf) [Å], ``semiangle_cutoff`` not in (0, inf] [mrad] (or None),
        ``rolloff`` negative, or a loss weight out of its range.
    """

    def __init__(
        self,
        energy: float,
        num_slices: int,
        slice_thicknesses: float | Sequence[float],
        datacube: Any = None,
        basis: Any = None,
        compression_mode: str | None = None,
        weights: Mapping[str, float] | None = None,
        name: str = "compressed_multislice_ptychographic_reconstruction",
        **kwargs: Any,
    ) -> None:
        energy, num_slices, slice_thicknesses = _check_constructor_arguments(
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
        #: the positions the user asked for; preprocess() drops those without a pattern
        self._requested_positions_mask = self._positions_mask
        self._basis, self._compression_mode = _resolve_basis(datacube, basis, compression_mode)
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

        Accepts every keyword of py4DSTEM's ``MultislicePtychography.reconstruct``
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
            ``w_p`` (Eq. 11), in [0, 1]; default 0 (measured: rescaling the orthogonal part
            of the prediction to the stored norms lowered the quality on the abTEM test
            sets). Has no effect on data compressed without perpendicular norms.
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
            (the uniform DF mask, bins) by rescaling the predicted pattern on that
            support instead of adding a constant (default True; see
            :func:`py4dstem_compressed.reconstruction.projection.project_values`). With a complete
            pixel basis both give py4DSTEM's amplitude replacement.
        match_region_energy : {"dark_field", True, False}
            In amplitude mode with stored perpendicular norms, rescale a region covered
            only by such masks (the single DF mask, DF bins) to its measured energy
            ``sum c^2 + p^2`` (the region's total intensity) rather than to its amplitude
            coefficient. The energy is exact for noise-free data and unbiased under shot
            noise, while the amplitude coefficient of a sparse region is biased low
            (``E[sqrt(N)] ~ lambda`` for ``lambda << 1`` counts per pixel). ``"dark_field"``
            (default): the DF region, where counts are sparse at any dose; True: both
            regions; False: neither. The setting does not depend on the data, so the
            reconstruction does not depend on the intensities' unit (counts, gain-scaled
            counts, normalised) nor on how far descan moves the disk. ``"auto"``, the
            data-dependent rule of 0.1, is read as ``"dark_field"`` with a FutureWarning.
            See :func:`py4dstem_compressed.reconstruction.projection.project_values`.
        match_region_shape : bool
            With ``match_region_energy=False`` (amplitude mode, stored perpendicular
            norms): reshape the prediction on a region covered only by such masks so that
            its measured coefficients and its measured energy hold together:
            ``a -> a**gamma`` on the region, one Newton step for ``gamma`` per data step.
            Off by default (its effect depends on the data; measurements in the README);
            it does nothing where the region's energy is matched.
            See :func:`~py4dstem_compressed.reconstruction.projection.project_values`
            (``match_shape``).
        **kwargs
            py4DSTEM's ``reconstruct`` keywords.

        Notes
        -----
        The regularisers of Eq. 13 are py4DSTEM's own object constraints:
        ``w_tv`` ↔ ``tv_denoise_weight_chambolle`` (or ``tv_denoise_weights=[w_z, w_r]``,
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
        self : CompressedMultislicePtychography

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
        unknown = set(kwargs) - _PY4DSTEM_RECONSTRUCT_ARGS
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ValueError(
                f"unknown reconstruct argument(s) {names}; the compressed-loss weights are "
                f"{', '.join(ProjectionWeights.names())} (other keywords are py4DSTEM's)"
            )
        num_iter = check_integer("num_iter", num_iter, 1)
        _check_reconstruct_arguments(kwargs)
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

    # ------------------------------------------------------------ measurement rows
    def _unpack_measurements(self, rows):
        """Split a batch of measurement rows into coefficients, norms and descan shifts."""
        k = self._operator.num_masks
        coefficients = rows[:, :k]
        norms = rows[:, k : k + 2] if self._has_perpendicular_norms else None
        shifts = rows[:, k + 2 : k + 4]
        return coefficients, norms, shifts

    def _descan(self, shifts):
        """Descan ramps of a batch, or None when the data need none."""
        if not self._has_descan:
            return None
        return descan_ramp(shifts, tuple(self._operator.shape), self._xp)

    def _fourier_data_step(self, rows, waves, options: DataStepOptions | None = None):
        """Modified far fields, predicted far fields, ramps and error for exit waves.

        ``options`` defaults to :attr:`data_step_options`.
        """
        xp = self._xp
        coefficients, norms, shifts = self._unpack_measurements(rows)
        ramp = self._descan(shifts)
        if ramp is not None:
            waves = waves * ramp
        fourier_waves = xp.fft.fft2(waves)
        options = self._data_step_options if options is None else options
        modified, error = fourier_projection(
            fourier_waves, coefficients, self._operator, norms, options
        )
        return modified, fourier_waves, ramp, error * self._error_scale

    # -------------------------------------------------- overridden py4DSTEM hooks
    def _gradient_descent_fourier_projection(
        self, amplitudes, overlap, fourier_mask, virtual_detector_masks
    ):
        """Compressed data step for gradient descent (replaces py4DSTEM's amplitude step).

        ``amplitudes`` are this batch's measurement rows (coefficients, perpendicular
        norms, descan shifts). Returns the back-propagated far-field difference and the
        batch coefficient error.
        """
        xp = self._xp
        modified, fourier_overlap, ramp, error = self._fourier_data_step(amplitudes, overlap)
        difference = modified - fourier_overlap
        if fourier_mask is not None:
            difference *= fourier_mask
        exit_waves = xp.fft.ifft2(difference)
        if ramp is not None:
            exit_waves *= xp.conj(ramp)
        return exit_waves, error

    def _projection_sets_fourier_projection(
        self,
        amplitudes,
        overlap,
        exit_waves,
        fourier_mask,
        virtual_detector_masks,
        projection_a,
        projection_b,
        projection_c,
    ):
        """Compressed data step for the projection-set methods (DM, RAAR, RRR, ...)."""
        if fourier_mask is not None:
            raise NotImplementedError(
                "detector_fourier_mask is not supported by projection-set methods (as in "
                "py4DSTEM); use reconstruction_method='gradient-descent' or the basis "
                "geometry's mask"
            )
        # the generalised-projection mixing is transcribed from
        # py4DSTEM 0.14.18, process/phase/ptychographic_methods.py,
        # ObjectNDProbeMethodsMixin._projection_sets_fourier_projection
        xp = self._xp
        projection_x = 1 - projection_a - projection_b
        projection_y = 1 - projection_c
        if exit_waves is None:
            exit_waves = overlap.copy()
        factor = projection_c * overlap + projection_y * exit_waves
        modified, _, ramp, error = self._fourier_data_step(amplitudes, factor)
        projected = xp.fft.ifft2(modified)
        if ramp is not None:
            projected *= xp.conj(ramp)
        exit_waves = projection_x * exit_waves + projection_a * overlap + projection_b * projected
        return exit_waves, error

    def _position_correction(
        self,
        current_object,
        vectorized_patch_indices_row,
        vectorized_patch_indices_col,
        shifted_probes,
        overlap,
        amplitudes,
        current_positions,
        current_positions_initial,
        positions_step_size,
        max_position_update_distance,
        max_position_total_distance,
    ):
        """Position correction from coefficients (py4DSTEM's uses per-pixel amplitudes).

        Linearises the predicted coefficients in the probe position (finite differences
        of one object pixel along each axis, as py4DSTEM does for intensities) and solves
        the per-position 2x2 least-squares problem in coefficient space.
        """
        xp = self._xp
        coefficients, _, shifts = self._unpack_measurements(amplitudes)
        ramp = self._descan(shifts)
        shape = self._object_shape
        # py4DSTEM passes the unshifted probe here while ``overlap`` used the sub-pixel
        # shifted one; use the shifted probe for both so the finite differences only
        # contain the one-pixel object shift
        positions = xp.asarray(current_positions)
        shifted_probes = self._return_shifted_probes(
            shifted_probes, positions - xp.round(positions)
        )
        waves = [overlap]
        for drow, dcol in ((1, 0), (0, 1)):
            _, _, shifted = self._overlap_projection(
                current_object,
                (vectorized_patch_indices_row + drow) % shape[0],
                (vectorized_patch_indices_col + dcol) % shape[1],
                shifted_probes,
            )
            waves.append(shifted)
        far_fields = [xp.fft.fft2(w if ramp is None else w * ramp) for w in waves]
        update = coefficient_position_update(
            far_fields[0], far_fields[1], far_fields[2], coefficients, self._operator
        )
        # step size and distance limits transcribed from
        # py4DSTEM 0.14.18, process/phase/ptychographic_methods.py,
        # ObjectNDProbeMethodsMixin._position_correction
        update = update * positions_step_size
        sampling = float(np.hypot(*self.sampling))
        if max_position_update_distance is not None:
            limit = max_position_update_distance / sampling
            norms = xp.linalg.norm(update, axis=1)
            too_far = norms > limit
            update[too_far] /= norms[too_far, None] / limit
        if max_position_total_distance is not None:
            limit = max_position_total_distance / sampling
            deltas = xp.asarray(current_positions - current_positions_initial) - update
            update[xp.linalg.norm(deltas, axis=1) > limit] = 0
        current_positions -= copy_to_device(update.astype(np.float32), self._storage)
        return current_positions

    def _constraints(
        self, current_object, current_probe, current_positions, initial_positions, **kwargs
    ):
        """py4DSTEM's constraints, then the probe-aperture step (Eq. 12)."""
        current_object, current_probe, current_positions = super()._constraints(
            current_object, current_probe, current_positions, initial_positions, **kwargs
        )
        weight = self._data_step_options.weights.probe_aperture
        if weight > 0:
            current_probe = probe_aperture_step(current_probe, self._outside_aperture, weight)
        return current_object, current_probe, current_positions

    def _probe_outside_aperture(self):
        """Corner-centred bool map of Fourier pixels beyond the probe aperture."""
        xp = self._xp
        shape = tuple(int(s) for s in self._region_of_interest_shape)
        semiangle = self._semiangle_cutoff
        if semiangle is not None and np.isfinite(semiangle):
            kx = xp.fft.fftfreq(shape[0], d=self.sampling[0])
            ky = xp.fft.fftfreq(shape[1], d=self.sampling[1])
            wavelength_mrad = self._energy_wavelength_angstrom() * 1e3
            alpha = xp.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2) * wavelength_mrad
            return alpha > semiangle
        aperture = xp.abs(xp.fft.fft2(self._probe_initial))
        return aperture < 1e-2 * aperture.max()

    def _energy_wavelength_angstrom(self) -> float:
        return float(electron_wavelength_angstrom(self._energy))

    def _return_self_consistency_errors(self, max_batch_size=None):
        """Per-position coefficient errors, normalised like :attr:`error`."""
        # batching after py4DSTEM 0.14.18, process/phase/ptychographic_methods.py,
        # ObjectNDProbeMethodsMixin._return_self_consistency_errors
        xp = self._xp
        xp_storage = self._xp_storage
        num = self._num_diffraction_patterns
        errors = []
        for start, end in generate_batches(num, max_batch=max_batch_size or num):
            positions_px = self._positions_px[start:end]
            fractional = positions_px - xp_storage.round(positions_px)
            rows, cols = self._extract_vectorized_patch_indices(positions_px)
            rows_data = copy_to_device(self._compressed_rows[start:end], self._device)
            probes = self._return_shifted_probes(self._probe, fractional)
            _, _, overlap = self._overlap_projection(self._object, rows, cols, probes)
            coefficients, _, shifts = self._unpack_measurements(rows_data)
            ramp = self._descan(shifts)
            far = xp.abs(xp.fft.fft2(overlap if ramp is None else overlap * ramp))
            values = measured_from_amplitude(far, self._operator.mode)
            residual = coefficients - mask_coefficients(values, self._operator.masks)
            errors.append(self._asnumpy((residual**2).sum(-1) * self._error_scale))
        return np.concatenate(errors) / self._mean_diffraction_intensity

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
        from py4dstem_compressed.analysis.plotting import show_coefficient_maps

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
        kwargs["name"] = kwargs.get("name") or "compressed_multislice_ptychographic_reconstruction"
        return kwargs


#: Numeric ``reconstruct`` keywords of py4DSTEM checked before any work:
#: name -> (low, high, low_open, high_open, unit, optional).
_RECONSTRUCT_RANGES = {
    "step_size": (0.0, np.inf, True, True, "", False),
    "positions_step_size": (0.0, np.inf, True, True, "", False),
    "max_position_update_distance": (0.0, np.inf, True, True, "Å", True),
    "max_position_total_distance": (0.0, np.inf, True, True, "Å", True),
    "shrinkage_rad": (0.0, np.inf, False, True, "rad", False),
    "gaussian_filter_sigma": (0.0, np.inf, True, True, "Å", True),
    "normalization_min": (0.0, 1.0, False, False, "", False),
}


def _check_constructor_arguments(energy, num_slices, slice_thicknesses, kwargs):
    """Reject nonsense physical constructor arguments before any work.

    Returns
    -------
    energy : float
        [eV].
    num_slices : int
    slice_thicknesses : float or numpy.ndarray
        [Å], as given (scalar or one per slice interface).
    """
    energy = check_real("energy", energy, unit="eV")
    num_slices = check_integer("num_slices", num_slices, 1)
    thicknesses = np.atleast_1d(np.asarray(slice_thicknesses, dtype=object))
    if thicknesses.ndim != 1:
        raise ValueError(
            "slice_thicknesses must be a number or a sequence of numbers [Å], got an array "
            f"of shape {thicknesses.shape}"
        )
    checked = [check_real("slice_thicknesses", t, unit="Å") for t in thicknesses]
    if np.ndim(slice_thicknesses) == 0:
        slice_thicknesses = checked[0]
    else:
        slice_thicknesses = np.asarray(checked, dtype=np.float64)
    check_real(
        "semiangle_cutoff",
        kwargs.get("semiangle_cutoff"),
        high_open=False,
        unit="mrad",
        optional=True,
    )
    check_real(
        "semiangle_cutoff_pixels", kwargs.get("semiangle_cutoff_pixels"), unit="px", optional=True
    )
    check_real("rolloff", kwargs.get("rolloff", 2.0), low_open=False, unit="mrad")
    return energy, num_slices, slice_thicknesses


def _check_reconstruct_arguments(kwargs) -> None:
    """Reject nonsense numeric py4DSTEM ``reconstruct`` keywords before any work."""
    check_integer("max_batch_size", kwargs.get("max_batch_size"), 1, optional=True)
    defaults = inspect.signature(MultislicePtychography.reconstruct).parameters
    for name, (low, high, low_open, high_open, unit, optional) in _RECONSTRUCT_RANGES.items():
        check_real(
            name,
            kwargs.get(name, defaults[name].default),
            low,
            high,
            low_open=low_open,
            high_open=high_open,
            unit=unit,
            optional=optional,
        )


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
            "CompressedMultislicePtychography? (run `import py4dstem_compressed` before reading)"
        )
    return dict(metadata._params)


def _resolve_basis(datacube, basis, compression_mode):
    """Check the data / basis / mode combination given to the constructor."""
    if compression_mode is not None:
        check_mode(compression_mode, "compression_mode")
    if datacube is not None and hasattr(datacube, "coefficients"):
        if basis is not None and basis is not datacube.basis:
            if not np.array_equal(np.asarray(basis.masks), np.asarray(datacube.basis.masks)):
                raise ValueError(
                    "a CompressedDataCube carries its own basis; omit basis= or pass the "
                    "same one (the given basis differs)"
                )
        if compression_mode is not None and compression_mode != datacube.mode:
            raise ValueError(
                f"the data were compressed in {datacube.mode!r} mode but compression_mode="
                f"{compression_mode!r}; omit compression_mode"
            )
        return datacube.basis, datacube.mode
    if datacube is not None:
        if not isinstance(datacube, DataCube):
            raise TypeError(
                "datacube must be a py4dstem_compressed.CompressedDataCube or a py4DSTEM "
                f"DataCube, got {type(datacube).__name__}"
            )
        if basis is None:
            raise ValueError(
                "a DataCube needs basis= (e.g. py4dstem_compressed.zernike_basis(geometry, "
                "num_bf=36, num_df=1)) to be compressed, or pass a CompressedDataCube"
            )
        basis.check_detector(datacube.data.shape[-2:], what="the DataCube")
    return basis, compression_mode or "amplitude"


# Files name the class "<Class> (written by py4dstem-compressed: ...)" so that reading without
# the plugin says what to do; register that name so emdfile finds the class once imported.
globals()[emd_class_name(CompressedMultislicePtychography)] = CompressedMultislicePtychography
