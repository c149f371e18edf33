"""The object's field of view: probe overlaps summed over the scan, and their figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["FOV_BLUR_SIGMA_PX", "FOV_THRESHOLD", "FieldOfViewMixin"]

#: py4DSTEM's field-of-view rule (py4DSTEM 0.14.18, MultislicePtychography.preprocess):
#: blur the probe overlaps by this Gaussian sigma [object px] ...
FOV_BLUR_SIGMA_PX = 1.0
#: ... and keep the pixels above this fraction of the blurred maximum.
FOV_THRESHOLD = 0.25


class FieldOfViewMixin:
    """Field-of-view mask of the compressed ptychography classes (no per-position FFT)."""

    def _set_fov_mask(self, object_fov_mask, plot_probe_overlaps, max_batch_size, kwargs) -> None:
        """Object field-of-view mask from the probe overlaps (py4DSTEM's rule).

        py4DSTEM sums sub-pixel-shifted probe intensities over every position (one FFT per
        position); the same overlap is the probe intensity convolved with the positions,
        splatted bilinearly onto the object grid: two object-sized FFTs, whatever the
        number of positions. ``max_batch_size`` is accepted for py4DSTEM compatibility.
        """
        # the mask rule (blur, 0.25 of the maximum) is py4DSTEM 0.14.18,
        # process/phase/multislice_ptychography.py, MultislicePtychography.preprocess's
        probe_overlap = None
        if object_fov_mask is None or plot_probe_overlaps:
            probe_overlap = self._probe_overlap()
        if object_fov_mask is None:
            blurred = self._scipy.ndimage.gaussian_filter(probe_overlap, FOV_BLUR_SIGMA_PX)
            self._object_fov_mask = self._asnumpy(blurred > FOV_THRESHOLD * blurred.max())
        elif object_fov_mask is True:
            self._object_fov_mask = np.full(self._object_shape, True)
        else:
            self._object_fov_mask = np.asarray(object_fov_mask)
        self._object_fov_mask_inverse = np.invert(self._object_fov_mask)
        if plot_probe_overlaps:
            self._plot_probe_overlaps(self._asnumpy(probe_overlap), kwargs)

    def _probe_overlap(self):
        """Sum of the probe intensity over all scan positions on the object grid."""
        xp = self._xp
        shape = tuple(int(n) for n in self._object_shape)
        size = shape[0] * shape[1]
        probe = xp.asarray(self._probe)
        if probe.ndim == 3:  # mixed state: the first mode, as py4DSTEM's preprocess does
            probe = probe[0]
        intensity = xp.abs(probe) ** 2  # corner-centred (Sx, Sy)
        sx, sy = intensity.shape
        ix = (xp.fft.fftfreq(sx, d=1 / sx).astype(int) % shape[0])[:, None]
        iy = (xp.fft.fftfreq(sy, d=1 / sy).astype(int) % shape[1])[None, :]
        kernel = xp.bincount(
            (ix * shape[1] + iy).ravel(), weights=intensity.ravel(), minlength=size
        ).reshape(shape)
        positions = xp.asarray(self._positions_px, dtype=xp.float64)
        base = xp.floor(positions)
        frac = positions - base
        base = base.astype(int)
        density = xp.zeros(size, dtype=xp.float64)
        for dx in (0, 1):
            for dy in (0, 1):
                weight = (frac[:, 0] if dx else 1 - frac[:, 0]) * (
                    frac[:, 1] if dy else 1 - frac[:, 1]
                )
                index = ((base[:, 0] + dx) % shape[0]) * shape[1] + (base[:, 1] + dy) % shape[1]
                density += xp.bincount(index, weights=weight, minlength=size)
        overlap = xp.fft.ifft2(xp.fft.fft2(density.reshape(shape)) * xp.fft.fft2(kernel))
        return xp.maximum(overlap.real, 0.0).astype(xp.float32)

    def _plot_probe_overlaps(self, probe_overlap: np.ndarray, kwargs: dict) -> None:
        """Initial probe intensity and the scanned field of view."""
        # after the probe-overlap figure of py4DSTEM 0.14.18,
        # process/phase/multislice_ptychography.py, MultislicePtychography.preprocess
        figsize = kwargs.pop("figsize", (9, 4))
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=figsize)
        sx, sy = self.sampling
        roi = self._region_of_interest_shape
        intensity = np.abs(np.asarray(self.probe_centered)) ** 2
        title = "Initial probe intensity"
        if intensity.ndim == 3:  # mixed state: (N, Sx, Sy) modes
            title += f" (sum of {intensity.shape[0]} modes)"
            intensity = intensity.sum(0)
        ax1.imshow(
            intensity,
            extent=[0, sy * roi[1], sx * roi[0], 0],
            cmap="Greys_r",
        )
        ax1.set_title(title)
        ax2.imshow(
            probe_overlap,
            extent=[0, sy * self._object_shape[1], sx * self._object_shape[0], 0],
            cmap="Greys_r",
        )
        ax2.scatter(self.positions[:, 1], self.positions[:, 0], s=2.5, color=(1, 0, 0, 1))
        ax2.set_title("Object field of view")
        for ax in (ax1, ax2):
            ax.set_xlabel("y [A]")
            ax.set_ylabel("x [A]")
        fig.tight_layout()
