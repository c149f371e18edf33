"""Probe-position correction from mask coefficients.

py4DSTEM's ``_position_correction`` fits, per probe position, the measured-minus-predicted
*pixel intensities* with the intensity change caused by moving the object one pixel along
each scan axis (a 2-parameter linear least-squares problem). With compressed data the same
fit runs in coefficient space: the residual is ``c - M v`` and the two partial derivatives
are projected onto the masks, so the problem has ``K`` equations instead of ``Sx * Sy``.
"""

from __future__ import annotations

from typing import Any

from py4dstem_compressed.core.backend import get_array_module, measured_from_amplitude
from py4dstem_compressed.reconstruction.operator import CompressedOperator
from py4dstem_compressed.reconstruction.projection import far_field_amplitudes

__all__ = ["coefficient_position_update"]

#: Amplitudes below this fraction of the batch maximum count as zero in the derivative of
#: ``|Psi|`` (amplitude mode), which divides by the amplitude.
AMPLITUDE_FLOOR = 1e-12
#: Keeps the 2x2 normal matrix invertible where it vanishes (no contrast at all).
NORMAL_MATRIX_FLOOR = 1e-30


def coefficient_position_update(
    far_field: Any,
    far_field_dx: Any,
    far_field_dy: Any,
    coefficients: Any,
    operator: CompressedOperator,
    regularization: float = 1e-6,
) -> Any:
    """Least-squares position update per probe position, in coefficient space.

    Parameters
    ----------
    far_field : array
        ``(B, Sx, Sy)`` complex predicted far fields at the current positions, or
        ``(B, M, Sx, Sy)`` for ``M`` probe modes (the data describe their incoherent sum).
    far_field_dx, far_field_dy : array
        Far fields of the same shape with the object shifted by one pixel along the
        first / second axis (py4DSTEM's finite-difference convention).
    coefficients : array
        ``(B, K)`` measured coefficients.
    operator : CompressedOperator
        Masks (same frame as the far fields) and the compression mode.
    regularization : float
        Tikhonov term added to the 2x2 normal matrix, relative to its trace
        (keeps positions without contrast, e.g. vacuum, from moving).

    Returns
    -------
    array
        ``(B, 2)`` update [object px] to be *subtracted* from the positions, as in
        py4DSTEM.
    """
    xp = get_array_module(far_field)
    batch = far_field.shape[0]
    amplitude = far_field_amplitudes(far_field)
    operator = operator.in_dtype(amplitude.dtype)  # one dtype: BLAS products
    partials = []
    for shifted in (far_field_dx, far_field_dy):
        # half the intensity change (summed over the modes of a mixed state)
        change = xp.real((far_field - shifted) * xp.conj(far_field))
        if change.ndim == 4:
            change = change.sum(axis=1)
        if operator.mode == "amplitude":
            change = change / xp.maximum(amplitude, AMPLITUDE_FLOOR * amplitude.max())
        else:
            change = 2 * change
        partials.append(change.reshape(batch, -1) @ operator.masks.T)
    values = measured_from_amplitude(amplitude, operator.mode)
    residual = coefficients - values.reshape(batch, -1) @ operator.masks.T
    design = xp.stack(partials, axis=-1)  # (B, K, 2)
    normal = xp.swapaxes(design, -1, -2) @ design  # (B, 2, 2)
    trace = xp.trace(normal, axis1=-2, axis2=-1)[:, None, None]
    normal = normal + (regularization * trace + NORMAL_MATRIX_FLOOR) * xp.eye(2, dtype=normal.dtype)
    rhs = xp.swapaxes(design, -1, -2) @ residual[..., None]
    return xp.linalg.solve(normal, rhs)[..., 0]
