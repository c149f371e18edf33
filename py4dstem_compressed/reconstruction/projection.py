"""The Fourier-space data step of compressed ptychography, as pure array functions.

py4DSTEM's ptychography replaces the predicted far-field amplitude ``|Psi|`` by the
measured one. With compressed data only the mask coefficients ``c_n = <a, M_n>`` (Eq. 8),
the per-region perpendicular norms ``p_R`` (Eq. 11) and the knowledge that nothing was
measured in the EDGE region remain. The functions here turn a batch of predicted far fields
into the "modified" far fields py4DSTEM's update needs (DESIGN.md, "The gradient step
inside py4DSTEM"):

1. coefficients: ``v <- v + w_c M^T (c - M v)``;
2. perpendicular: per region, scale the part of ``v`` orthogonal to the region's masks
   so its norm moves toward ``p_R`` (``w_p = 0`` off, ``1`` full projection);
3. edge: scale ``v`` on EDGE pixels by ``1 - w_e``;
4. clip at 0 and keep the predicted phase.

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

from dataclasses import dataclass
from typing import Any

import numpy as np

from py4dstem_compressed.core.backend import check_mode, get_array_module, measured_from_amplitude
from py4dstem_compressed.reconstruction.options import DataStepOptions

__all__ = [
    "CompressedOperator",
    "coefficient_error",
    "descan_ramp",
    "fourier_projection",
    "mask_coefficients",
    "probe_aperture_step",
    "project_values",
]


@dataclass(frozen=True, eq=False)
class CompressedOperator:
    """A basis as the reconstruction sees it: masks in py4DSTEM's corner-centred frame.

    Build it with :meth:`from_detector`; the arrays live on the reconstruction device.

    Attributes
    ----------
    masks : array
        ``(K, P)`` float32 masks, flattened corner-centred frame.
    region_maps : array
        ``(2, P)`` float32 indicator maps of the BF and DF regions.
    edge_map : array
        ``(P,)`` float32 indicator map of the EDGE region (unmeasured pixels).
    mask_regions : array
        ``(2, K)`` float32 indicator of the region (BF, DF) each mask lives in.
    shape : tuple of int
        ``(Sx, Sy)`` pattern shape [px].
    mode : str
        ``"amplitude"`` (coefficients of ``sqrt(I)``) or ``"intensity"`` (of ``I``).
    scalable_index : array or None
        ``(Ks,)`` indices of the *scalable* masks: non-negative masks whose support no
        other mask touches (a uniform DF mask, bins). Their coefficient can be matched by
        rescaling the prediction on their support (see :func:`project_values`).
    scalable_support : array or None
        ``(Ks, P)`` float32 indicator of each scalable mask's support.
    energy_regions : array or None
        ``(Ks, 2)`` float32: row ``i`` marks the region (BF, DF) of scalable mask ``i`` when
        *every* mask of that region is scalable (the single DF mask, DF bins), else zeros.
        In amplitude mode those regions can be matched to their measured energy
        ``sum_n c_n^2 + p_R^2`` (see :func:`project_values`).
    shape_regions : tuple of bool
        Whether each region (BF, DF) is an energy region with a mask wider than one pixel:
        where the prediction's shape can be matched to the region's measured energy (see
        :func:`project_values`, ``match_shape``).
    """

    masks: Any
    region_maps: Any
    edge_map: Any
    mask_regions: Any
    shape: tuple[int, int]
    mode: str = "amplitude"
    scalable_index: Any = None
    scalable_support: Any = None
    energy_regions: Any = None
    shape_regions: tuple[bool, bool] = (False, False)

    @classmethod
    def from_detector(
        cls,
        masks: np.ndarray,
        bf: np.ndarray,
        df: np.ndarray,
        origin_px: tuple[int, int],
        mode: str = "amplitude",
        xp: Any = np,
    ) -> CompressedOperator:
        """Map detector-frame masks and regions into the corner-centred frame.

        Parameters
        ----------
        masks : numpy.ndarray
            ``(K, Qx, Qy)`` orthonormal masks, detector frame.
        bf, df : numpy.ndarray of bool
            ``(Qx, Qy)`` BF and DF region maps, detector frame. EDGE is the rest.
        origin_px : tuple of int
            Detector pixel ``(qx, qy)`` that becomes the corner pixel ``(0, 0)``: the
            masks are rolled (wrapping around) by ``-origin_px``. An integer roll keeps
            them exactly orthonormal; sub-pixel offsets go into the descan ramp.
        mode : {"amplitude", "intensity"}
            What the coefficients were computed from.
        xp : module
            Array module of the reconstruction device (``numpy`` or ``cupy``).
        """
        check_mode(mode)
        masks = np.asarray(masks, dtype=np.float32)
        shift = (-int(origin_px[0]), -int(origin_px[1]))
        rolled = np.roll(masks, shift, axis=(-2, -1)).reshape(masks.shape[0], -1)
        regions = np.stack([np.asarray(bf, bool), np.asarray(df, bool)])
        regions = np.roll(regions, shift, axis=(-2, -1)).reshape(2, -1)
        edge = ~(regions[0] | regions[1])
        # region of each mask: where its energy is (BF masks in BF, DF masks in DF)
        energy = (rolled.astype(np.float64) ** 2) @ regions.T.astype(np.float64)  # (K, 2)
        outside = 1.0 - energy.sum(axis=1)
        if np.any(outside > 1e-3) or np.any(energy.min(axis=1) > 1e-3):
            raise ValueError(
                "every mask must lie inside one region (BF or DF) of the detector geometry"
            )
        mask_regions = (energy == energy.max(axis=1, keepdims=True)).T
        index, support = _scalable_masks(rolled)
        # regions made only of scalable masks: their energy can be matched as a whole
        scalable = np.zeros(masks.shape[0], bool)
        scalable[index] = True
        whole = np.array([bool(scalable[row].all()) and row.any() for row in mask_regions])
        energy_regions = (mask_regions[:, index].T & whole[None, :]).astype(np.float32)
        # regions whose shape can change: some mask covers more than one pixel
        sizes = support.sum(axis=1)
        shapeable = energy_regions.T @ (sizes > 1) > 0  # (2,)
        return cls(
            masks=xp.asarray(rolled),
            region_maps=xp.asarray(regions, dtype=xp.float32),
            edge_map=xp.asarray(edge, dtype=xp.float32),
            mask_regions=xp.asarray(mask_regions, dtype=xp.float32),
            shape=(int(masks.shape[-2]), int(masks.shape[-1])),
            mode=mode,
            scalable_index=xp.asarray(index) if index.size else None,
            scalable_support=xp.asarray(support) if index.size else None,
            energy_regions=xp.asarray(energy_regions) if energy_regions.any() else None,
            shape_regions=(bool(shapeable[0]), bool(shapeable[1])),
        )

    @property
    def num_masks(self) -> int:
        """Number of masks ``K``."""
        return int(self.masks.shape[0])


def _scalable_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices and supports of non-negative masks whose support no other mask touches."""
    support = masks != 0
    coverage = support.sum(axis=0)
    scalable = (masks >= 0).all(axis=1) & (coverage[None, :] == 1).sum(axis=1).astype(bool)
    scalable &= ~(support & (coverage[None, :] > 1)).any(axis=1)
    index = np.flatnonzero(scalable)
    return index, support[index].astype(np.float32)


def mask_coefficients(values: Any, masks: Any) -> Any:
    """Coefficients ``<v, M_n>`` of a batch (Eq. 8).

    Parameters
    ----------
    values : array
        ``(B, P)`` or ``(B, Sx, Sy)`` amplitudes or intensities.
    masks : array
        ``(K, P)`` masks.

    Returns
    -------
    array
        ``(B, K)`` coefficients.
    """
    flat = values.reshape(values.shape[0], -1)
    return flat @ masks.T


def project_values(
    values: Any,
    coefficients: Any,
    operator: CompressedOperator,
    perpendicular_norms: Any | None = None,
    options: DataStepOptions | None = None,
) -> tuple[Any, Any]:
    """Steps 1-3 of the data step on a batch of predicted amplitudes (or intensities).

    Coefficients of signed masks (Zernike, diffraction patterns, PCA) are matched by the
    orthogonal projection ``v + M^T (c - M v)``. With ``scale_nonnegative`` the
    coefficients of *scalable* masks (non-negative with a support of their own: the
    uniform DF mask, bins) are matched instead by rescaling the prediction on their
    support by ``c_n / <v, M_n>``. Both give the same coefficients; the rescaling keeps
    the predicted pattern's shape inside the support (Bragg spots stay spots) where the
    projection would add a flat pedestal. On the abTEM test sets this raised the
    band-passed (0.35-1.2 A) correlation with the truth by 0.1-0.5 for one DF mask.

    With ``match_energy`` (amplitude mode, perpendicular norms given) a region made only
    of scalable masks (the single DF mask, DF bins) is rescaled so that its energy equals
    the measured one, ``sum_n c_n^2 + p_R^2 = sum_{k in R} I(k)``, shared between its
    masks in proportion to ``c_n^2``. Noise-free data satisfy both the coefficient and
    the energy; under Poisson noise the energy is unbiased, while the amplitude
    coefficient of sparse counts is biased low (``E[sqrt(N)] ~ lambda << sqrt(lambda)``
    for ``lambda << 1`` counts per pixel, as in the dark field): matching it would
    starve the dark field that carries the finest object detail. py4DSTEM's own
    amplitude replacement gives the dark field exactly the measured energy too.

    With ``match_shape`` (amplitude mode, perpendicular norms given) such a region that is
    *not* energy-matched is first reshaped so that, once its coefficients are matched, its
    energy also equals the measured ``sum_n c_n^2 + p_R^2``. For one mask of ``n`` pixels
    this fixes the participation ratio ``(sum v)^2 / (n sum v^2) = c^2 / (c^2 + p^2)``, how
    evenly the intensity spreads over the region. The prediction ``v`` becomes ``v**gamma``
    on the region's masks (zeros stay zero, the order of the pixels is kept), with one
    Newton step for ``gamma`` per call, limited to ``[1 - SHAPE_STEP_LIMIT, 1 +
    SHAPE_STEP_LIMIT]``. This is the perpendicular constraint (Eq. 11) of a region made of
    non-negative masks, met without the flat pedestal that rescaling the orthogonal part
    would add. On the noise-free abTEM ``small`` sets (30 iterations, Zernike 36+1) the
    early dark-field predictions were ~2.5x too concentrated; matching the shape raised the
    band-passed correlation with the truth by 0.01, but lowered it on other sets (see
    ``CompressedMultislicePtychography.reconstruct``, ``match_region_shape``).

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
        shaped = _shape_switch(operator, perpendicular_norms, match_energy, match_shape)
        if shaped is not None:
            values = _match_participation(
                values, coefficients[:, index], perpendicular_norms, operator, shaped
            )
            predicted = values @ masks.T
            step_residual = coefficients - predicted
            if weights.coefficient != 1.0:
                target = predicted + weights.coefficient * step_residual
        current = predicted[:, index]
        wanted = current + weights.coefficient * step_residual[:, index]
        positive = current > 1e-3 * xp.abs(wanted)  # rescale by at most 1000
        ratio = xp.where(positive, wanted / xp.where(positive, current, 1.0), 1.0)
        if (
            operator.mode == "amplitude"
            and perpendicular_norms is not None
            and operator.energy_regions is not None
        ):
            switch = _per_region(match_energy)
            if switch.any():
                energy_regions = _switched_regions(operator, switch)
                ratio = _energy_ratio(
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
            perpendicular_norms / xp.maximum(predicted_norms, 1e-30),
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
    return projected, residual


#: largest change of the power-law exponent of :func:`project_values`'s shape matching
#: per data step
SHAPE_STEP_LIMIT = 0.5


def _per_region(flag) -> np.ndarray:
    """A bool or a ``(BF, DF)`` pair of bools as a ``(2,)`` bool array."""
    return np.broadcast_to(np.asarray(flag, dtype=bool), (2,))


def _switched_regions(operator, switch: np.ndarray):
    """``(Ks, 2)`` energy regions of ``operator`` restricted to the regions in ``switch``."""
    xp = get_array_module(operator.masks)
    return operator.energy_regions * xp.asarray(switch, dtype=xp.float32)[None, :]


def _shape_switch(operator, perpendicular_norms, match_energy, match_shape):
    """``(Ks, 2)`` regions to reshape (see project_values, ``match_shape``), or None."""
    if operator.mode != "amplitude" or perpendicular_norms is None:
        return None
    switch = _per_region(match_shape) & ~_per_region(match_energy)
    switch &= np.asarray(operator.shape_regions, dtype=bool)
    return _switched_regions(operator, switch) if switch.any() else None


def _support_sums(values, support):
    """``values @ support.T`` for ``(B, P)`` values and a few ``(Ks, P)`` supports."""
    if support.shape[0] <= 4:  # BLAS matrix-vector products are slow for this shape
        xp = get_array_module(values)
        return xp.stack([(values * row).sum(axis=1) for row in support], axis=1)
    return values @ support.T


def _spread(per_support, support):
    """``per_support @ support``: ``(B, Ks)`` values onto the pixels of their supports."""
    if support.shape[0] == 1:
        return per_support[:, :1] * support[0]
    return per_support @ support


def _match_participation(values, coefficients, perpendicular_norms, operator, regions):
    """Power-law reshaping of the prediction on the scalable masks of ``regions``.

    ``coefficients`` are the measured coefficients of the scalable masks ``(B, Ks)``. After
    matching coefficient ``c_n`` on a support of ``n_n`` pixels, a prediction ``x`` has the
    energy ``c_n^2 / PR_n`` with ``PR_n = (sum x)^2 / (n_n sum x^2)``; the exponent ``gamma``
    of ``x**gamma`` takes one Newton step on ``log`` of the region's energy towards the
    measured ``sum c_n^2 + p_R^2``. The powers are taken of ``x`` relative to its mean on
    each support, so the support's scale (and the coefficient rescaling that follows) is
    kept. Pixels outside the reshaped supports are returned unchanged.
    """
    xp = get_array_module(values)
    dtype = values.dtype
    active = (regions.sum(axis=1) > 0).astype(dtype)  # (Ks,)
    support = operator.scalable_support.astype(dtype) * active[:, None]  # (Ks, P)
    logs = xp.log(xp.maximum(values, dtype.type(1e-30)))
    weighted = values * logs
    sums = _support_sums(values, support)  # (B, Ks)
    sum_squares = _support_sums(values * values, support)
    log_sums = _support_sums(weighted, support)
    log_sum_squares = _support_sums(values * weighted, support)
    sizes = xp.maximum(support.sum(axis=1), 1.0)
    valid = (sums > 0) & (sum_squares > 0)
    sums = xp.where(valid, sums, 1.0)
    sum_squares = xp.where(valid, sum_squares, 1.0)
    participation = sums**2 / (sizes[None, :] * sum_squares)
    slope = 2.0 * (log_sums / sums - log_sum_squares / sum_squares)  # d log PR / d gamma <= 0
    c2 = (coefficients.astype(dtype) ** 2) * valid
    energy = c2 / participation  # (B, Ks) energy of each support once its coefficient matches
    predicted = energy @ regions  # (B, 2)
    measured = c2 @ regions + perpendicular_norms.astype(dtype) ** 2
    derivative = (-energy * slope) @ regions  # d predicted / d gamma, >= 0
    ok = (predicted > 0) & (measured > 0) & (derivative > 1e-12 * predicted)
    step = xp.where(
        ok,
        predicted
        * (xp.log(xp.where(ok, measured, 1.0)) - xp.log(xp.where(ok, predicted, 1.0)))
        / xp.where(ok, derivative, 1.0),
        0.0,
    )
    step = xp.clip(step, -SHAPE_STEP_LIMIT, SHAPE_STEP_LIMIT) @ regions.T  # (B, Ks)
    log_means = xp.log(sums / sizes[None, :])
    # x**gamma relative to the support mean m: m * (x / m)**gamma = x * exp(step * (log x - log m))
    exponent = _spread(step, support) * logs - _spread(step * log_means, support)
    touched = support.sum(axis=0) > 0  # (P,)
    return xp.where(touched & (values > 0), values * xp.exp(exponent), values).astype(dtype)


def _energy_ratio(values, coefficients, perpendicular_norms, supports, regions, ratio, weights):
    """Rescale factors matching each energy region's measured energy (see project_values).

    ``coefficients`` are the measured coefficients of the scalable masks ``(B, Ks)``,
    ``supports`` their ``(Ks, P)`` supports and ``regions`` the ``(Ks, 2)`` energy regions
    in use; ``ratio`` the coefficient-matching factors, kept for masks outside energy
    regions and where the energy is undefined (no measured or no predicted intensity).
    """
    xp = get_array_module(values)
    c2 = coefficients.astype(values.dtype) ** 2
    region_c2 = c2 @ regions  # (B, 2)
    share = xp.where(region_c2 > 0, perpendicular_norms**2 / xp.maximum(region_c2, 1e-30), 0.0)
    wanted = c2 * (1.0 + share @ regions.T)  # (B, Ks) measured energy on each support
    current = (values**2) @ supports.T
    ok = (current > 0) & ((region_c2 > 0) @ regions.T > 0) & (regions.sum(axis=1) > 0)[None, :]
    energy_ratio = xp.sqrt(wanted / xp.where(ok, current, 1.0))
    energy_ratio = 1.0 + weights.coefficient * (energy_ratio - 1.0)
    return xp.where(ok, energy_ratio, ratio)


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


def fourier_projection(
    fourier_overlap: Any,
    coefficients: Any,
    operator: CompressedOperator,
    perpendicular_norms: Any | None = None,
    options: DataStepOptions | None = None,
) -> tuple[Any, Any]:
    """The data step on predicted far fields: modified far fields and the batch error.

    Parameters
    ----------
    fourier_overlap : array
        ``(B, Sx, Sy)`` complex predicted far fields (corner-centred), already shifted
        by any descan.
    coefficients : array
        ``(B, K)`` measured coefficients (of ``sqrt(I)`` or ``I``, see ``operator.mode``).
    operator : CompressedOperator
        Masks and regions in the same frame.
    perpendicular_norms : array, optional
        ``(B, 2)`` measured BF/DF perpendicular norms, or ``None``.
    options : DataStepOptions, optional
        Weights and switches (see :func:`project_values`); defaults to
        ``DataStepOptions()``.

    Returns
    -------
    modified : array
        ``(B, Sx, Sy)`` complex far fields with the projected amplitude and the
        predicted phase (py4DSTEM's "modified overlap").
    error : array
        0-d coefficient loss ``sum (c - chat)^2`` of the batch, in the units of the
        coefficients squared.
    """
    xp = get_array_module(fourier_overlap)
    batch = fourier_overlap.shape[0]
    amplitudes = xp.abs(fourier_overlap)
    values = measured_from_amplitude(amplitudes, operator.mode).reshape(batch, -1)
    projected, residual = project_values(
        values, coefficients, operator, perpendicular_norms, options
    )
    projected = xp.maximum(projected, 0.0)
    if operator.mode == "intensity":
        projected = xp.sqrt(projected)
    projected = projected.reshape(fourier_overlap.shape)
    # keep the predicted phase: unit phasors by division (cheaper than exp(i angle)); where
    # the prediction is 0 its phase is taken as 0, as np.angle does
    amplitudes = amplitudes.reshape(fourier_overlap.shape)
    nonzero = amplitudes > 0
    phasors = xp.where(nonzero, fourier_overlap / xp.where(nonzero, amplitudes, 1.0), 1.0)
    modified = projected * phasors
    return modified, coefficient_error(residual)


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
