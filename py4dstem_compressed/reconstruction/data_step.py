"""The overridden py4DSTEM hooks that read the measurement rows: the compressed data step.

py4DSTEM's ``reconstruct`` loop (py4DSTEM 0.14.18) calls these hooks per batch with the
batch's measurement rows in the place of per-pixel amplitudes (see
:mod:`py4dstem_compressed.reconstruction.py4dstem_internals`). They unpack the rows and call
the pure functions of :mod:`py4dstem_compressed.reconstruction.projection` and
:mod:`py4dstem_compressed.reconstruction.position_correction`.

The same hooks serve the four classes: single-mode classes hand them exit waves of shape
``(B, Sx, Sy)``, mixed-state classes ``(B, M, Sx, Sy)`` (``M`` probe modes); the pure
functions read the shape, and descan ramps ``(B, Sx, Sy)`` are broadcast over the modes.
"""

from __future__ import annotations

import numpy as np
from py4DSTEM.process.phase.utils import copy_to_device, generate_batches
from py4DSTEM.process.utils import electron_wavelength_angstrom

from py4dstem_compressed.core.backend import measured_from_amplitude
from py4dstem_compressed.reconstruction.operator import mask_coefficients
from py4dstem_compressed.reconstruction.options import DataStepOptions
from py4dstem_compressed.reconstruction.position_correction import coefficient_position_update
from py4dstem_compressed.reconstruction.projection import (
    descan_ramp,
    far_field_amplitudes,
    fourier_difference,
    fourier_projection,
    probe_aperture_step,
)

__all__ = ["APERTURE_FALLBACK_THRESHOLD", "DataStepMixin"]

#: Without a finite ``semiangle_cutoff`` the aperture of Eq. 12 is where the initial probe's
#: Fourier amplitude exceeds this fraction of its maximum.
APERTURE_FALLBACK_THRESHOLD = 1e-2


def _over_modes(ramp, waves):
    """A ``(B, Sx, Sy)`` ramp shaped to multiply ``waves`` (``(B, M, Sx, Sy)`` for modes)."""
    return ramp[:, None] if waves.ndim == 4 else ramp


class DataStepMixin:
    """Hooks of the compressed ptychography classes called by py4DSTEM's loop."""

    def _unpack_measurements(self, rows):
        """Split a batch of measurement rows into coefficients, norms and descan shifts.

        A row holds ``K`` coefficients, the BF and DF perpendicular norms (columns ``K``,
        ``K + 1``) and the descan shift ``(dqx, dqy)`` [px] (columns ``K + 2``, ``K + 3``).
        """
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

    def _fourier_data_step(
        self, rows, waves, options: DataStepOptions | None = None, step=fourier_projection
    ):
        """Stepped far fields, predicted far fields, ramps and error for exit waves.

        ``options`` defaults to :attr:`data_step_options`. ``step`` is
        :func:`fourier_projection` (modified far fields) or :func:`fourier_difference`
        (modified minus predicted far fields, what the gradient step needs).
        """
        xp = self._xp
        coefficients, norms, shifts = self._unpack_measurements(rows)
        ramp = self._descan(shifts)
        if ramp is not None:
            ramp = _over_modes(ramp, waves)
            waves = waves * ramp
        fourier_waves = xp.fft.fft2(waves)
        options = self._data_step_options if options is None else options
        stepped, error = step(
            fourier_waves, coefficients, self._operator, norms, options, self._counts_per_intensity
        )
        return stepped, fourier_waves, ramp, error * self._error_scale

    def _gradient_descent_fourier_projection(
        self, amplitudes, overlap, fourier_mask, virtual_detector_masks
    ):
        """Compressed data step for gradient descent (replaces py4DSTEM's amplitude step).

        ``amplitudes`` are this batch's measurement rows (coefficients, perpendicular
        norms, descan shifts). Returns the back-propagated far-field difference (the
        shape of ``overlap``: ``(B, Sx, Sy)``, or ``(B, M, Sx, Sy)`` for ``M`` probe
        modes) and the batch coefficient error.
        """
        xp = self._xp
        difference, _, ramp, error = self._fourier_data_step(
            amplitudes, overlap, step=fourier_difference
        )
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
        # py4DSTEM's multislice classes pass the unshifted probe (N, Sx, Sy for modes) here
        # while ``overlap`` used the sub-pixel shifted one (its single-slice classes pass
        # the shifted probes, one more axis); use the shifted probe for both so the finite
        # differences only contain the one-pixel object shift
        if shifted_probes.ndim == self._probe.ndim:
            positions = xp.asarray(current_positions)
            shifted_probes = self._return_shifted_probes(
                shifted_probes, positions - xp.round(positions)
            )
        if ramp is not None:
            ramp = _over_modes(ramp, overlap)
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
        aperture = far_field_amplitudes(xp.fft.fft2(xp.asarray(self._probe_initial))[None])[0]
        return aperture < APERTURE_FALLBACK_THRESHOLD * aperture.max()

    def _energy_wavelength_angstrom(self) -> float:
        """Electron wavelength [A], by py4DSTEM's formula (its probe's aperture uses it too).

        ``core.optics.electron_wavelength_angstrom`` (CODATA 2018) differs by ~1e-7 relative;
        py4DSTEM's keeps the aperture pixel-identical to the probe's (py4dstem_internals).
        """
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
            if ramp is not None:
                overlap = overlap * _over_modes(ramp, overlap)
            far = far_field_amplitudes(xp.fft.fft2(overlap))
            values = measured_from_amplitude(far, self._operator.mode)
            masks = self._operator.in_dtype(values.dtype).masks
            residual = coefficients - mask_coefficients(values, masks)
            errors.append(self._asnumpy((residual**2).sum(-1) * self._error_scale))
        return np.concatenate(errors) / self._mean_diffraction_intensity
