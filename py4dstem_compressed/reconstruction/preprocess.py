"""``preprocess`` for compressed data: py4DSTEM's steps without per-pixel patterns.

py4DSTEM's ``MultislicePtychography.preprocess`` reads every pattern to fit centres of mass,
shift the patterns to the corner and take square roots. From a ``CompressedDataCube`` the
same information comes from what was stored per position:

* calibrations: the data's py4DSTEM ``Calibration``;
* scan rotation / transpose: py4DSTEM's curl / divergence solver fed with the stored centres
  of mass (``force_com_rotation``, ``force_com_transpose``, ``force_com_shifts``,
  ``force_com_measured``, ``fit_function`` ... behave as in py4DSTEM);
* normalisation: the mean stored total intensity;
* frame: the masks are rolled once by the (integer) mean fitted centre into py4DSTEM's
  corner-centred frame; the remaining per-position offsets of the fitted centres become
  *descan shifts* applied to the predictions (a real-space phase ramp), since the measured
  patterns can no longer be shifted.

Memory grows with positions x masks: the only per-position table is ``(N, K + 4)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from py4DSTEM.data import Calibration
from py4DSTEM.process.phase.utils import ComplexProbe

from py4dstem_compressed.reconstruction.arguments import check_preprocess_arguments
from py4dstem_compressed.reconstruction.data_selection import valid_patterns
from py4dstem_compressed.reconstruction.operator import CompressedOperator

__all__ = ["CalibrationOnlyDataCube", "CompressedPreprocessMixin"]

#: Descan shifts below this [px] are treated as none (no ramp is applied).
DESCAN_TOLERANCE_PX = 1e-3


class CalibrationOnlyDataCube:
    """A stand-in DataCube for py4DSTEM's calibration rules: scan shape and calibration only.

    py4DSTEM's ``_extract_intensities_and_calibrations_from_datacube`` (py4DSTEM 0.14.18,
    ``process/phase/phase_base_class.py``) reads ``datacube.data`` (for the scan shape: its
    first two axes) and ``datacube.calibration``. Compressed data have no per-pixel array;
    this adapter offers a zero-stride ``(Rx, Ry, 1, 1)`` view (no memory) and the data's
    calibration, so that py4DSTEM's own rules and error messages apply unchanged.

    Parameters
    ----------
    scan_shape : tuple of int
        ``(Rx, Ry)`` scan shape.
    calibration : py4DSTEM.data.Calibration or None
        The data's calibration (None: py4DSTEM's default, in pixels).
    """

    def __init__(self, scan_shape: tuple[int, int], calibration: Calibration | None) -> None:
        self.data = np.broadcast_to(np.float32(0), (*scan_shape, 1, 1))
        self.calibration = calibration if calibration is not None else Calibration()


class CompressedPreprocessMixin:
    """``preprocess`` and its steps for the compressed ptychography classes.

    The class attribute ``_multislice_model`` says whether the object has slices (one
    initial object per slice, Fresnel propagators between them).
    """

    def preprocess(
        self,
        diffraction_intensities_shape: tuple[int, int] | None = None,
        reshaping_method: str = "bilinear",
        shifting_interpolation_order: int = 3,
        padded_diffraction_intensities_shape: tuple[int, int] | None = None,
        region_of_interest_shape: tuple[int, int] | None = None,
        dp_mask: np.ndarray | None = None,
        in_place_datacube_modification: bool = False,
        fit_function: str = "plane",
        plot_center_of_mass: str = "default",
        plot_rotation: bool = True,
        maximize_divergence: bool = False,
        rotation_angles_deg: np.ndarray | None = None,
        plot_probe_overlaps: bool = True,
        force_com_rotation: float | None = None,
        force_com_transpose: bool | None = None,
        force_com_shifts: Any = None,
        force_com_measured: Any = None,
        vectorized_com_calculation: bool = True,
        force_scan_sampling: float | None = None,
        force_angular_sampling: float | None = None,
        force_reciprocal_sampling: float | None = None,
        object_fov_mask: np.ndarray | None = None,
        crop_patterns: bool = False,
        center_positions_in_fov: bool = True,
        store_initial_arrays: bool = True,
        device: str | None = None,
        clear_fft_cache: bool | None = None,
        max_batch_size: int | None = None,
        **kwargs: Any,
    ):
        """Prepare the reconstruction from compressed data (py4DSTEM's keywords).

        A ``DataCube`` input is first compressed onto the basis (``compress``) and then
        treated exactly like a ``CompressedDataCube``.

        Patterns missing from the data (a file of an interrupted acquisition:
        ``CompressedDataCube.valid`` False, values NaN) are left out, with a warning: the
        reconstruction uses the complete patterns only (their measurement rows, probe
        positions, field of view and centre-of-mass fit), as if they had been selected
        with ``positions_mask``. A ``positions_mask`` given to the constructor selects
        among the complete patterns.

        Parameters
        ----------
        fit_function : str
            Fit of the centres of mass over the scan (``"plane"``, ``"parabola"``,
            ``"bezier_two"`` or None): the fitted centres give the descan shifts.
        force_com_rotation : float, optional
            Scan rotation [deg]; solved from the stored centres of mass otherwise.
        force_com_transpose : bool, optional
            Force the transpose of the scan axes.
        force_com_shifts : tuple, optional
            Fitted centres ``(qx, qy)`` [px] (arrays over the scan or scalars).
        force_com_measured : tuple, optional
            Measured centres ``(qx, qy)`` [px] replacing the stored ones.
        force_scan_sampling : float, optional
            Scan step [Å], overriding the calibration.
        force_angular_sampling, force_reciprocal_sampling : float, optional
            Detector pixel size [mrad] or [1/Å], overriding the calibration.
        max_batch_size : int, optional
            Accepted for compatibility; the probe overlaps need no batching here.

        Other keywords (``plot_center_of_mass``, ``plot_rotation``,
        ``maximize_divergence``, ``rotation_angles_deg``, ``plot_probe_overlaps``,
        ``object_fov_mask``, ``center_positions_in_fov``, ``store_initial_arrays``,
        ``device``, ``clear_fft_cache``) are py4DSTEM's. ``shifting_interpolation_order``,
        ``in_place_datacube_modification`` and ``vectorized_com_calculation`` have no
        effect (no pattern is shifted or re-read). Resampling, padding, cropping,
        ``region_of_interest_shape`` and ``dp_mask`` act on pixels and raise
        ``NotImplementedError`` (put unmeasured pixels in the basis geometry's mask).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a sampling that is not a positive number, a rotation that is not finite, a
            ``max_batch_size`` below 1 (before any work), or data whose patterns are all
            missing.

        Warns
        -----
        UserWarning
            When patterns are missing, saying how many.
        """
        # The steps and their order are transcribed from py4DSTEM 0.14.18,
        # process/phase/multislice_ptychography.py, MultislicePtychography.preprocess
        # (pixel steps replaced by their compressed counterparts); the single-slice and
        # mixed-state classes' preprocess differ only in the object and probe steps.
        check_preprocess_arguments(
            force_com_rotation,
            force_scan_sampling,
            force_angular_sampling,
            force_reciprocal_sampling,
            max_batch_size,
        )
        _reject_pixel_options(
            diffraction_intensities_shape=diffraction_intensities_shape,
            padded_diffraction_intensities_shape=padded_diffraction_intensities_shape,
            dp_mask=dp_mask,
            crop_patterns=crop_patterns or None,
        )
        self.set_device(device, clear_fft_cache)
        data = self._compressed_data(progress_bar=self._verbose)
        detector_shape = _detector_shape(data, region_of_interest_shape)
        self._diffraction_intensities_shape = None
        self._reshaping_method = reshaping_method
        self._padded_diffraction_intensities_shape = None
        self._dp_mask = None
        valid = valid_patterns(data)
        self._positions_mask = self._positions_to_use(valid)
        self._set_calibrations(
            data, force_scan_sampling, force_angular_sampling, force_reciprocal_sampling
        )
        if self._semiangle_cutoff_pixels:
            self._semiangle_cutoff = self._semiangle_cutoff_pixels * self._angular_sampling[0]
        com_measured, com_shifts = _com_inputs(data, valid, force_com_measured, force_com_shifts)
        self._fit_center_of_mass_and_rotation(
            com_measured,
            com_shifts,
            fit_function=fit_function,
            rotation_angles_deg=rotation_angles_deg,
            plot_rotation=plot_rotation,
            plot_center_of_mass=plot_center_of_mass,
            maximize_divergence=maximize_divergence,
            force_com_rotation=force_com_rotation,
            force_com_transpose=force_com_transpose,
            **kwargs,
        )
        self._build_measurements(data)
        self._set_detector_frame(detector_shape)
        self._place_positions_and_object(valid, store_initial_arrays, center_positions_in_fov)
        self._initialize_probe_and_propagators(store_initial_arrays)
        self._set_fov_mask(object_fov_mask, plot_probe_overlaps, max_batch_size, kwargs)
        self._preprocessed = True
        self.clear_device_mem(self._device, self._clear_fft_cache)
        return self

    def _fit_center_of_mass_and_rotation(
        self, com_measured, com_shifts, fit_function, **rotation_kwargs
    ) -> None:
        """Fitted centres of mass over the scan and the scan rotation (py4DSTEM's solvers).

        ``rotation_kwargs`` go to ``_solve_for_center_of_mass_relative_rotation``
        (``force_com_rotation``, ``plot_rotation``, ...).
        """
        (
            self._com_measured_x,
            self._com_measured_y,
            self._com_fitted_x,
            self._com_fitted_y,
            self._com_normalized_x,
            self._com_normalized_y,
        ) = self._calculate_intensities_center_of_mass(
            None, fit_function=fit_function, com_shifts=com_shifts, com_measured=com_measured
        )
        (
            self._rotation_best_rad,
            self._rotation_best_transpose,
            self._com_x,
            self._com_y,
        ) = self._solve_for_center_of_mass_relative_rotation(
            self._com_measured_x,
            self._com_measured_y,
            self._com_normalized_x,
            self._com_normalized_y,
            **rotation_kwargs,
        )
        attrs = [
            "_com_measured_x",
            "_com_measured_y",
            "_com_fitted_x",
            "_com_fitted_y",
            "_com_normalized_x",
            "_com_normalized_y",
            "_com_x",
            "_com_y",
        ]
        self.copy_attributes_to_device(attrs, self._storage)

    def _set_detector_frame(self, detector_shape: tuple[int, int]) -> None:
        """py4DSTEM's pattern-frame attributes: the detector itself (no crop, no resampling)."""
        self._crop_mask = None
        self._crop_mask_shape = detector_shape
        self._amplitudes_shape = np.array(detector_shape)
        self._resample_exit_waves = False
        self._region_of_interest_shape = np.array(detector_shape)

    def _place_positions_and_object(
        self, valid: np.ndarray, store_initial_arrays: bool, center_positions_in_fov: bool
    ) -> None:
        """Probe positions [object px] and the initial object, as py4DSTEM's preprocess."""
        xp_storage = self._xp_storage
        self._positions_px, self._object_padding_px = self._calculate_scan_positions_in_pixels(
            self._scan_positions_to_use(valid),
            self._positions_mask,
            self._object_padding_px,
            self._positions_offset_ang,
        )
        if self._multislice_model:
            self._object = self._initialize_object(
                self._object, self._num_slices, self._positions_px, self._object_type
            )
        else:
            self._object = self._initialize_object(
                self._object, self._positions_px, self._object_type
            )
        if store_initial_arrays:
            self._object_initial = self._object.copy()
            self._object_type_initial = self._object_type
        self._object_shape = self._object.shape[-2:]
        self._positions_px = xp_storage.asarray(self._positions_px, dtype=xp_storage.float32)
        self._positions_px_initial_com = self._positions_px.mean(0)
        if center_positions_in_fov:
            self._positions_px -= (
                self._positions_px_initial_com - xp_storage.array(self._object_shape) / 2
            )
            self._positions_px_initial_com = self._positions_px.mean(0)
        self._positions_px_initial = self._positions_px.copy()
        self._positions_initial = self._positions_px_initial.copy()
        self._positions_initial[:, 0] *= self.sampling[0]
        self._positions_initial[:, 1] *= self.sampling[1]

    def _set_calibrations(self, data, scan_sampling, angular_sampling, reciprocal_sampling):
        """Scan and detector calibrations from the data (py4DSTEM's rules and errors)."""
        calibration = getattr(data, "calibration", None)
        forced_q = angular_sampling is not None or reciprocal_sampling is not None
        # compressing a plain array leaves py4DSTEM's default calibration in pixels
        r_missing = calibration is None or calibration.get_R_pixel_units() == "pixels"
        q_missing = calibration is None or calibration.get_Q_pixel_units() == "pixels"
        if (r_missing and scan_sampling is None) or (q_missing and not forced_q):
            raise ValueError(
                "the CompressedDataCube has no calibration: compress a DataCube with "
                "R_pixel_size [Å] and Q_pixel_size [mrad or 1/Å] set, or pass "
                "force_scan_sampling [Å] and force_angular_sampling [mrad] (or "
                "force_reciprocal_sampling [1/Å]) to preprocess()"
            )
        scan_shape = tuple(int(s) for s in data.coefficients.shape[:2])
        self._extract_intensities_and_calibrations_from_datacube(
            CalibrationOnlyDataCube(scan_shape, calibration),
            require_calibrations=True,
            force_scan_sampling=scan_sampling,
            force_angular_sampling=angular_sampling,
            force_reciprocal_sampling=reciprocal_sampling,
        )

    def _build_measurements(self, data) -> None:
        """Per-position measurement rows and the masks in the corner-centred frame."""
        asnumpy = self._asnumpy
        basis = data.basis
        fitted = np.stack(
            [asnumpy(self._com_fitted_x), asnumpy(self._com_fitted_y)], axis=-1
        ).astype(np.float64)
        # descan-aware data: the masks already moved by whole pixels; what is left to the
        # predictions is the fitted descan minus that shift
        fitted = fitted - np.asarray(data.descan_shift_px, dtype=np.float64)
        coefficients = np.asarray(data.coefficients, dtype=np.float32)
        norms = np.asarray(data.perpendicular_norms, dtype=np.float32)
        totals = np.asarray(data.total_intensity, dtype=np.float64)
        if self._positions_mask is not None:
            select = self._positions_mask
            fitted, coefficients, norms, totals = (
                fitted[select],
                coefficients[select],
                norms[select],
                totals[select],
            )
        else:
            fitted = fitted.reshape(-1, 2)
            coefficients = coefficients.reshape(-1, coefficients.shape[-1])
            norms = norms.reshape(-1, 2)
            totals = totals.reshape(-1)
        # Reconstruct in a canonical unit, intensities as fractions of the mean pattern's
        # total: the data step is unit-free, but py4DSTEM's updates hold absolute epsilons
        # (1e-16 in the probe and object normalisations) that tiny values reach.
        unit = float(np.mean(totals)) if totals.size else 1.0
        unit = unit if np.isfinite(unit) and unit > 0 else 1.0
        self._intensity_unit = unit
        # shot noise: detected electrons per canonical unit of intensity (None: noise-free)
        gain = data.intensity_per_count
        self._counts_per_intensity = unit / gain if gain > 0 and data.mode == "amplitude" else None
        to_canonical = 1.0 / np.sqrt(unit) if data.mode == "amplitude" else 1.0 / unit
        coefficients = coefficients * np.float32(to_canonical)
        norms = norms * np.float32(to_canonical)
        origin = np.round(np.nanmean(fitted, axis=0)).astype(int)
        shifts = np.nan_to_num(fitted - origin).astype(np.float32)
        self._has_descan = bool(np.abs(shifts).max(initial=0.0) > DESCAN_TOLERANCE_PX)
        self._has_perpendicular_norms = bool(np.all(np.isfinite(norms)) and norms.any())
        self._descan_origin_px = tuple(int(o) for o in origin)
        self._operator = CompressedOperator.from_detector(
            basis.masks,
            basis.geometry.bf,
            basis.geometry.df,
            self._descan_origin_px,
            mode=data.mode,
            xp=self._xp,
        )
        rows = np.concatenate([coefficients, np.nan_to_num(norms), shifts], axis=1)
        # the measurement rows (py4dstem_internals: py4DSTEM's loop sees them as _amplitudes)
        self._compressed_rows = self._xp_storage.asarray(rows, dtype=np.float32)
        self._num_diffraction_patterns = rows.shape[0]
        self._mean_diffraction_intensity = float(totals.mean()) / unit  # 1 (canonical)
        self._error_scale = (
            1.0 if data.mode == "amplitude" else 1.0 / self._mean_diffraction_intensity
        )

    def _initialize_probe_and_propagators(self, store_initial_arrays: bool) -> None:
        """Probe (modes), known aberrations and propagators, as py4DSTEM's preprocess does."""
        # transcribed from py4DSTEM 0.14.18, process/phase/multislice_ptychography.py,
        # MultislicePtychography.preprocess
        xp = self._xp
        self._probe, self._semiangle_cutoff = self._initialize_probe(
            self._probe,
            self._vacuum_probe_intensity,
            self._mean_diffraction_intensity,
            self._semiangle_cutoff,
            False,
        )
        self._known_aberrations_array = ComplexProbe(
            energy=self._energy,
            gpts=self._region_of_interest_shape,
            sampling=self.sampling,
            parameters=self._polar_parameters,
            device=self._device,
        )._evaluate_ctf()
        if store_initial_arrays:
            self._probe_initial = self._probe.copy()
            self._probe_initial_aperture = xp.abs(xp.fft.fft2(self._probe))
        else:
            self._probe_initial_aperture = None
        if not self._multislice_model:
            return
        self._propagator_arrays = self._precompute_propagator_arrays(
            self._region_of_interest_shape,
            self.sampling,
            self._energy,
            self._slice_thicknesses,
            self._theta_x,
            self._theta_y,
        )


def _reject_pixel_options(**options) -> None:
    """Raise for a py4DSTEM ``preprocess`` option that acts on pixels (given, not None)."""
    for key, value in options.items():
        if value is not None:
            raise NotImplementedError(
                f"{key} acts on pixels and is not available for compressed data; build "
                "the basis on the detector you want (unmeasured pixels go in "
                "DetectorGeometry(mask=...))"
            )


def _detector_shape(data, region_of_interest_shape) -> tuple[int, int]:
    """The basis' detector shape [px]; any other ``region_of_interest_shape`` raises."""
    detector_shape = tuple(int(s) for s in data.basis.masks.shape[-2:])
    if region_of_interest_shape is not None and tuple(region_of_interest_shape) != (detector_shape):
        raise NotImplementedError(
            "region_of_interest_shape other than the detector shape needs per-pixel "
            "resampling and is not available for compressed data"
        )
    return detector_shape


def _com_inputs(data, valid, force_com_measured, force_com_shifts):
    """Measured and (optionally) fitted centres of mass as py4DSTEM expects them.

    The measured centres of missing patterns are NaN, so that py4DSTEM's fit of the centres
    over the scan (``fit_function``) uses the complete patterns only.
    """
    scan_shape = tuple(int(s) for s in data.coefficients.shape[:2])

    def as_maps(pair):
        if pair is None:
            return None
        return tuple(np.broadcast_to(np.asarray(v, dtype=np.float32), scan_shape) for v in pair)

    if force_com_measured is None:
        com = np.asarray(data.center_of_mass, dtype=np.float32)
        com_measured = (com[..., 0], com[..., 1])
    else:
        com_measured = as_maps(force_com_measured)
    if not valid.all():
        com_measured = tuple(np.where(valid, com, np.float32(np.nan)) for com in com_measured)
    return com_measured, as_maps(force_com_shifts)
