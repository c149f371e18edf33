"""The Fourier-space data step of compressed ptychography, as pure array functions.

py4DSTEM's ptychography replaces the predicted far-field amplitude ``|Psi|`` by the
measured one. With compressed data only the mask coefficients ``c_n = <a, M_n>`` (Eq. 8),
the per-region perpendicular norms ``p_R`` (Eq. 11) and the knowledge that nothing was
measured in the EDGE region remain. The functions here turn a batch of predicted far fields
into the "modified" far fields py4DSTEM's update needs (its gradient step then runs
unchanged; see :mod:`~py4dstem_compressed.reconstruction.py4dstem_internals`):

1. coefficients: ``v <- v + w_c M^T (c - M v)``;
2. perpendicular: per region, scale the part of ``v`` orthogonal to the region's masks
   so its norm moves toward ``p_R`` (``w_p = 0`` off, ``1`` full projection);
3. edge: scale ``v`` on EDGE pixels by ``1 - w_e``;
4. clip at 0 and keep the predicted phase.

An energy-matched region (the dark field by default, amplitude mode, perpendicular norms
stored) replaces steps 1-2 there by a step that needs no switch for any number of masks:
one uniform mask or bins are rescaled to the measured energy ``sum c^2 + p^2``; signed masks
(several DF masks) multiply the prediction by ``exp(M_R^T lam)`` towards the measured
coefficients, project the result onto the stored coefficients and perpendicular norm with
the weight the shot noise allows (1 for noise-free data, ~counts per pixel for a sparse dark
field) and rescale it to the measured energy
(:func:`~py4dstem_compressed.reconstruction.region_matching.match_signed_region`); with the
data's shot noise known (``counts_per_intensity``) the coefficients are modelled as those of
the expected amplitude of the counts and each coefficient is followed only as far as it
stands above its noise (:mod:`~py4dstem_compressed.reconstruction.shot_noise_model`).

Mixed state (``M`` probe modes, far fields ``(B, M, Sx, Sy)``): the stored data describe
the incoherent sum over the modes, so ``v`` is the amplitude ``sqrt(sum_m |Psi_m|^2)`` (or
the intensity ``sum_m |Psi_m|^2``) and step 4 multiplies every mode by the same per-pixel
factor ``projected / sqrt(sum_m |Psi_m|^2)`` (0 where the prediction is 0), as py4DSTEM's
mixed-state amplitude projection does.

``v`` is the predicted amplitude in amplitude mode. In intensity mode the same three
steps act on the predicted intensity and the amplitude is the square root of the result:
for small residuals this is the gradient step of ``sum_n (<|Psi|^2, M_n> - c_n)^2`` with
the per-pixel Gauss-Newton step ``1 / (2 |Psi|^2)``, and the square root keeps the step
bounded however large the residual (no step size to tune).

Everything works on any array module with NumPy's API (NumPy, CuPy): the module is
derived from the arrays passed in. Arrays are in py4DSTEM's corner-centred frame, with
the two detector axes flattened to one pixel axis ``P = Sx * Sy`` where noted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from py4dstem_compressed.core.backend import get_array_module, measured_from_amplitude
from py4dstem_compressed.core.batch_threads import map_over_batch
from py4dstem_compressed.reconstruction.operator import CompressedOperator
from py4dstem_compressed.reconstruction.options import DataStepOptions
from py4dstem_compressed.reconstruction.region_matching import (
    TINY,
    energy_ratio,
    match_participation,
    match_signed_region,
    per_region,
    shape_switch,
    switched_regions,
)

__all__ = [
    "coefficient_error",
    "descan_ramp",
    "far_field_amplitudes",
    "fourier_difference",
    "fourier_projection",
    "probe_aperture_step",
    "project_values",
]

#: A scalable mask's prediction is rescaled only where it is above this fraction of the
#: wanted coefficient: rescaling by more than 1 / MIN_RESCALED_FRACTION would amplify noise.
MIN_RESCALED_FRACTION = 1e-3
#: Precision of the signed-region step: single, that of py4DSTEM's own arrays (NumPy's FFT
#: returns double far fields, CuPy's keep single). The step is ~30 passes over the batch and
#: seven mask products, bound by memory traffic: single precision halves it (a third of the
#: time on a CPU), and its results stay within ~2e-6 of double precision's.
SIGNED_REGION_DTYPE = np.float32


def project_values(
    values: Any,
    coefficients: Any,
    operator: CompressedOperator,
    perpendicular_norms: Any | None = None,
    options: DataStepOptions | None = None,
    counts_per_intensity: float | None = None,
) -> tuple[Any, Any]:
    """Steps 1-3 of the data step on a batch of predicted amplitudes (or intensities).

    Coefficients of signed masks (Zernike, diffraction patterns, PCA) are matched by the
    orthogonal projection ``v + M^T (c - M v)``. With ``scale_nonnegative`` the
    coefficients of *scalable* masks (non-negative with a support of their own: the
    uniform DF mask, bins) are matched instead by rescaling the prediction on their
    support by ``c_n / <v, M_n>``. Both give the same coefficients; the rescaling keeps
    the predicted pattern's shape inside the support (Bragg spots stay spots) where the
    projection would add a flat pedestal.

    With ``match_energy`` (amplitude mode, perpendicular norms given) a region made only
    of scalable masks (the single DF mask, DF bins) is rescaled so that its energy equals
    the measured one, ``sum_n c_n^2 + p_R^2 = sum_{k in R} I(k)``, shared between its
    masks in proportion to ``c_n^2``. Noise-free data satisfy both the coefficient and
    the energy; under Poisson noise the energy is unbiased, while the amplitude
    coefficient of sparse counts is biased low (``E[sqrt(N)] ~ lambda << sqrt(lambda)``
    for ``lambda << 1`` counts per pixel, as in the dark field): matching it would
    starve the dark field that carries the finest object detail. py4DSTEM's own
    amplitude replacement gives the dark field exactly the measured energy too.

    A region holding signed masks (several DF masks: Zernike doughnuts, diffraction
    patterns, PCA) is energy-matched the same way, its shape following the coefficients
    (noise-free: meeting them and the perpendicular norm exactly): see
    :func:`~py4dstem_compressed.reconstruction.region_matching.match_signed_region`.

    With ``match_shape`` (amplitude mode, perpendicular norms given) such a region that is
    *not* energy-matched is first reshaped so that, once its coefficients are matched, its
    energy also equals the measured ``sum_n c_n^2 + p_R^2``. For one mask of ``n`` pixels
    this fixes the participation ratio ``(sum v)^2 / (n sum v^2) = c^2 / (c^2 + p^2)``, how
    evenly the intensity spreads over the region. The prediction ``v`` becomes ``v**gamma``
    on the region's masks (zeros stay zero, the order of the pixels is kept), with one
    Newton step for ``gamma`` per call, limited to ``[1 - SHAPE_STEP_LIMIT, 1 +
    SHAPE_STEP_LIMIT]``. This is the perpendicular constraint (Eq. 11) of a region made of
    non-negative masks, met without the flat pedestal that rescaling the orthogonal part
    would add.

    Parameters
    ----------
    values : array
        ``(B, P)`` predicted amplitudes (amplitude mode) or intensities (intensity mode).
    coefficients : array
        ``(B, K)`` measured coefficients.
    operator : CompressedOperator
        Masks and regions, same frame as ``values``.
    perpendicular_norms : array, optional
        ``(B, 2)`` measured BF and DF perpendicular norms; ``None`` skips step 2.
    options : DataStepOptions, optional
        Weights and switches; defaults to ``DataStepOptions()``. ``scale_nonnegative``
        matches scalable masks by rescaling rather than by projection; ``match_energy``
        and ``match_shape`` need ``scale_nonnegative``, amplitude mode and
        ``perpendicular_norms``; energy-matched regions take no separate perpendicular
        step.
    counts_per_intensity : float, optional
        Detected electrons one unit of ``values**2`` stands for (shot noise, see
        :mod:`~py4dstem_compressed.reconstruction.shot_noise_model`); None: noise-free.
        Used by the signed-region step, whose coefficients are those of the expected
        amplitude.

    Returns
    -------
    projected : array
        ``(B, P)`` values after the coefficient, perpendicular and edge steps (not
        clipped).
    residual : array
        ``(B, K)`` measured minus predicted coefficients, ``c - M v``.
    """
    options = DataStepOptions() if options is None else options
    weights = options.weights
    match_energy, match_shape = options.match_energy, options.match_shape
    xp = get_array_module(values)
    masks = operator.masks
    predicted = values @ masks.T
    residual = coefficients - predicted
    if weights.coefficient == 1.0:
        target = coefficients  # exact: a complete basis reproduces the data bit for bit
    else:
        target = predicted + weights.coefficient * residual
    energy_regions = None
    step_residual = residual  # of the prediction the steps below start from
    if options.scale_nonnegative and operator.scalable_index is not None:
        index = operator.scalable_index
        shaped = shape_switch(operator, perpendicular_norms, match_energy, match_shape)
        if shaped is not None:
            values = match_participation(
                values, coefficients[:, index], perpendicular_norms, operator, shaped
            )
            predicted = values @ masks.T
            step_residual = coefficients - predicted
            if weights.coefficient != 1.0:
                target = predicted + weights.coefficient * step_residual
        current = predicted[:, index]
        wanted = current + weights.coefficient * step_residual[:, index]
        positive = current > MIN_RESCALED_FRACTION * xp.abs(wanted)
        ratio = xp.where(positive, wanted / xp.where(positive, current, 1.0), 1.0)
        if (
            operator.mode == "amplitude"
            and perpendicular_norms is not None
            and operator.energy_regions is not None
        ):
            switch = per_region(match_energy)
            if switch.any():
                energy_regions = switched_regions(operator, switch)
                ratio = energy_ratio(
                    values,
                    coefficients[:, index],
                    perpendicular_norms,
                    operator.scalable_support,
                    energy_regions,
                    ratio,
                    weights,
                )
        values = values * (1.0 + (ratio - 1.0) @ operator.scalable_support)
        # those coefficients now match (or, where the prediction was 0, are left to the
        # projection below)
        predicted = values @ masks.T
        if energy_regions is not None:
            # energy-matched masks keep their rescaled coefficients (no projection back)
            matched = xp.zeros(masks.shape[0], dtype=values.dtype)
            matched[index] = energy_regions.sum(axis=1)
            target = target + (predicted - target) * matched
    # per-pixel scale of the part of the prediction orthogonal to every mask:
    # EDGE pixels by (1 - w_e), BF/DF pixels by the perpendicular step of their region
    edge_scale = operator.edge_map * (1.0 - weights.edge) + (1.0 - operator.edge_map)
    if perpendicular_norms is not None and weights.perpendicular > 0:
        # ||v_R - P_R v_R||^2 = ||v_R||^2 - ||M_R v||^2 (orthonormal masks inside R)
        region_energy = (values**2) @ operator.region_maps.T
        captured = (predicted**2) @ operator.mask_regions.T
        predicted_norms = xp.sqrt(xp.maximum(region_energy - captured, 0.0))
        ratio = xp.where(
            predicted_norms > 0,
            perpendicular_norms / xp.maximum(predicted_norms, TINY),
            1.0,
        )
        region_scale = 1.0 + weights.perpendicular * (ratio - 1.0)  # (B, 2)
        if energy_regions is not None:  # already matched as a whole
            region_scale = xp.where(energy_regions.max(axis=0) > 0, 1.0, region_scale)
        scale = edge_scale + (region_scale - 1.0) @ operator.region_maps
        mask_scale = region_scale @ operator.mask_regions  # (B, K): scale of each mask's region
    else:
        scale = xp.broadcast_to(edge_scale, values.shape)
        mask_scale = 1.0
    # target @ M + (v - predicted @ M) * scale, with one matmul: masks live in one region
    projected = (target - predicted * mask_scale) @ masks + values * scale
    measured = (coefficients, perpendicular_norms, counts_per_intensity)
    projected = _match_signed_regions(projected, values, target, measured, operator, options)
    return projected, residual


def _match_signed_regions(projected, values, target, measured, operator, options):
    """Energy-matched signed regions moved towards their coefficients and energy.

    The region's pixels of ``projected`` are replaced by :func:`match_signed_region` of the
    prediction ``values`` (the additive coefficient step is not used there). ``measured`` is
    ``(coefficients, perpendicular_norms, counts_per_intensity)``. Amplitude mode with
    perpendicular norms only; other data are returned unchanged. The step computes in
    :data:`SIGNED_REGION_DTYPE`.
    """
    coefficients, norms, counts_per_intensity = measured
    if operator.mode != "amplitude" or norms is None:
        return projected
    switch = per_region(options.match_energy) & np.asarray(operator.signed_regions)
    if not switch.any():
        return projected
    xp = get_array_module(projected)
    single = operator.in_dtype(SIGNED_REGION_DTYPE)
    values = values.astype(SIGNED_REGION_DTYPE, copy=False)
    for r in np.flatnonzero(switch):
        index = operator.region_index[r]
        energy = (coefficients[:, index] ** 2).sum(axis=1) + norms[:, r] ** 2
        matched = match_signed_region(
            values,
            target[:, index].astype(SIGNED_REGION_DTYPE, copy=False),
            energy.astype(SIGNED_REGION_DTYPE, copy=False),
            single.region_maps[r],
            single.masks[index],
            options.weights.coefficient,
            counts_per_intensity=counts_per_intensity,
        )
        projected = xp.where(operator.region_maps[r] > 0, matched, projected)
    return projected


def coefficient_error(residual: Any) -> Any:
    """Coefficient loss of a batch, ``sum (c - chat)^2`` (Eq. 9), as a 0-d array."""
    return (residual**2).sum()


def descan_ramp(shifts_px: Any, shape: tuple[int, int], xp: Any = np) -> Any:
    """Real-space phase ramps that shift far fields by ``shifts_px``.

    Multiplying an exit wave by the ramp moves its Fourier transform by
    ``+shifts_px`` pixels (sub-pixel allowed). Coordinates are taken in the
    ``fftfreq`` convention (``[-S/2, S/2)``) so the ramp's jump sits where a
    corner-centred probe has no intensity.

    Parameters
    ----------
    shifts_px : array
        ``(B, 2)`` shifts ``(dqx, dqy)`` [detector px].
    shape : tuple of int
        ``(Sx, Sy)`` array shape [px].
    xp : module
        Array module.

    Returns
    -------
    array
        ``(B, Sx, Sy)`` complex64 ramps.
    """
    fx = xp.fft.fftfreq(shape[0])
    fy = xp.fft.fftfreq(shape[1])
    shifts = xp.asarray(shifts_px, dtype=xp.float64)
    ramp_x = xp.exp((2j * np.pi) * shifts[:, 0, None] * fx[None]).astype(xp.complex64)
    ramp_y = xp.exp((2j * np.pi) * shifts[:, 1, None] * fy[None]).astype(xp.complex64)
    return ramp_x[:, :, None] * ramp_y[:, None, :]


def far_field_amplitudes(fourier_overlap: Any) -> Any:
    """Predicted far-field amplitudes: ``|Psi|``, or ``sqrt(sum_m |Psi_m|^2)`` for modes.

    Parameters
    ----------
    fourier_overlap : array
        ``(B, Sx, Sy)`` complex far fields, or ``(B, M, Sx, Sy)`` for ``M`` probe modes.

    Returns
    -------
    array
        ``(B, Sx, Sy)`` amplitudes (of the incoherent sum over modes).
    """
    xp = get_array_module(fourier_overlap)
    if fourier_overlap.ndim == 4:
        return xp.sqrt((fourier_overlap.real**2 + fourier_overlap.imag**2).sum(axis=1))
    return xp.abs(fourier_overlap)


def fourier_projection(
    fourier_overlap: Any,
    coefficients: Any,
    operator: CompressedOperator,
    perpendicular_norms: Any | None = None,
    options: DataStepOptions | None = None,
    counts_per_intensity: float | None = None,
) -> tuple[Any, Any]:
    """The data step on predicted far fields: modified far fields and the batch error.

    Parameters
    ----------
    fourier_overlap : array
        ``(B, Sx, Sy)`` complex predicted far fields (corner-centred), already shifted
        by any descan; ``(B, M, Sx, Sy)`` for ``M`` probe modes (mixed state), whose
        incoherent sum the data describe.
    coefficients : array
        ``(B, K)`` measured coefficients (of ``sqrt(I)`` or ``I``, see ``operator.mode``).
    operator : CompressedOperator
        Masks and regions in the same frame.
    perpendicular_norms : array, optional
        ``(B, 2)`` measured BF/DF perpendicular norms, or ``None``.
    options : DataStepOptions, optional
        Weights and switches (see :func:`project_values`); defaults to
        ``DataStepOptions()``.
    counts_per_intensity : float, optional
        Detected electrons per unit of predicted intensity (see :func:`project_values`);
        None: noise-free.

    Returns
    -------
    modified : array
        Complex far fields of the shape of ``fourier_overlap`` with the projected
        amplitude and the predicted phase (py4DSTEM's "modified overlap"); for modes,
        every mode scaled by the same per-pixel factor.
    error : array
        0-d coefficient loss ``sum (c - chat)^2`` of the batch, in the units of the
        coefficients squared.
    """
    return _stepped_far_fields(
        _modified_far_fields,
        fourier_overlap,
        coefficients,
        operator,
        perpendicular_norms,
        options,
        counts_per_intensity,
    )


def fourier_difference(
    fourier_overlap: Any,
    coefficients: Any,
    operator: CompressedOperator,
    perpendicular_norms: Any | None = None,
    options: DataStepOptions | None = None,
    counts_per_intensity: float | None = None,
) -> tuple[Any, Any]:
    """``modified - fourier_overlap`` of :func:`fourier_projection`, and the batch error.

    What the gradient step back-propagates, computed as one real factor per pixel times the
    prediction, ``Psi (a' / |Psi| - 1)``, without forming the modified far field (two
    passes over complex arrays fewer). Pixels where the prediction is 0 get ``a'`` (phase
    0, as :func:`fourier_projection`). Parameters as :func:`fourier_projection`.
    """
    return _stepped_far_fields(
        _far_field_differences,
        fourier_overlap,
        coefficients,
        operator,
        perpendicular_norms,
        options,
        counts_per_intensity,
    )


def _stepped_far_fields(
    combine,
    fourier_overlap,
    coefficients,
    operator,
    perpendicular_norms,
    options,
    counts_per_intensity,
):
    """``(combine's far fields, batch error)``: the data step, pattern by pattern.

    Patterns are independent: on the CPU the batch is split over the cores
    (:func:`~py4dstem_compressed.core.batch_threads.map_over_batch`) and every part, from
    the predicted amplitudes to ``combine``'s per-pixel product with the far fields, runs
    in its own thread and writes its rows of one output array (no joining copy).
    """
    xp = get_array_module(fourier_overlap)
    operator = operator.in_dtype(fourier_overlap.real.dtype)
    stepped = xp.empty_like(fourier_overlap)

    def part(overlap, measured, norms, out):
        amplitudes = far_field_amplitudes(overlap)
        values = measured_from_amplitude(amplitudes, operator.mode).reshape(len(overlap), -1)
        projected, residual = project_values(
            values, measured, operator, norms, options, counts_per_intensity
        )
        projected = xp.maximum(projected, 0.0)
        if operator.mode == "intensity":
            projected = xp.sqrt(projected)
        combine(overlap, amplitudes, projected.reshape(amplitudes.shape), out)
        return (residual,)

    (residual,) = map_over_batch(part, fourier_overlap, coefficients, perpendicular_norms, stepped)
    return stepped, coefficient_error(residual)


def _modified_far_fields(overlap, amplitudes, projected, out) -> None:
    """``out``: the projected amplitudes with the predicted phase (per mode: one factor)."""
    xp = get_array_module(overlap)
    nonzero = amplitudes > 0
    if overlap.ndim == 4:
        # one factor per pixel for every mode; 0 where no mode carries intensity (py4DSTEM
        # 0.14.18, ObjectNDProbeMixedMethodsMixin._gradient_descent_fourier_projection)
        factor = xp.where(nonzero, projected / xp.where(nonzero, amplitudes, 1.0), 0.0)
        xp.multiply(factor[:, None], overlap, out=out)
        return
    # keep the predicted phase: unit phasors by division (cheaper than exp(i angle)); where
    # the prediction is 0 its phase is taken as 0, as np.angle does
    xp.divide(overlap, xp.where(nonzero, amplitudes, 1.0), out=out)
    out[~nonzero] = 1.0
    out *= projected


def _far_field_differences(overlap, amplitudes, projected, out) -> None:
    """``out``: ``Psi (a' / |Psi| - 1)``; ``a'`` where the prediction is 0 (phase 0)."""
    xp = get_array_module(overlap)
    nonzero = amplitudes > 0
    factor = projected / xp.where(nonzero, amplitudes, 1.0)
    factor -= 1.0
    if overlap.ndim == 4:
        # every mode by the same factor; where no mode carries intensity the modified
        # field is 0 as in fourier_projection, so the difference is 0 too
        factor *= nonzero
        xp.multiply(factor[:, None], overlap, out=out)
        return
    xp.multiply(overlap, factor, out=out)
    zero = ~nonzero
    if bool(zero.any()):
        out[zero] = projected[zero]


def probe_aperture_step(probe: Any, outside_aperture: Any, weight: float) -> Any:
    """Gradient step of the probe-aperture loss (Eq. 12).

    Parameters
    ----------
    probe : array
        ``(Sx, Sy)`` complex corner-centred real-space probe.
    outside_aperture : array
        ``(Sx, Sy)`` bool, corner-centred Fourier pixels beyond ``alpha / lambda``.
    weight : float
        ``w_a`` in ``[0, 1]``: the Fourier probe there is multiplied by ``1 - w_a``.

    Returns
    -------
    array
        The updated probe.
    """
    if weight <= 0:
        return probe
    xp = get_array_module(probe)
    fourier_probe = xp.fft.fft2(probe)
    fourier_probe = xp.where(outside_aperture, (1.0 - weight) * fourier_probe, fourier_probe)
    return xp.fft.ifft2(fourier_probe).astype(probe.dtype)
