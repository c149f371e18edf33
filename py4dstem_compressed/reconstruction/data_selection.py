"""Which data and which scan positions a compressed reconstruction uses."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["DataSelectionMixin", "valid_patterns"]


class DataSelectionMixin:
    """The attached compressed data and the scan positions taken from it."""

    def _compressed_data_or_none(self):
        """The attached CompressedDataCube, or None (no data, or a DataCube not yet compressed)."""
        data = self._datacube
        return data if data is not None and hasattr(data, "coefficients") else None

    def _compressed_data(self, progress_bar: bool = True):
        """The attached CompressedDataCube, compressing a DataCube on first use."""
        if self._datacube is None:
            raise ValueError(
                "preprocess() needs data: pass datacube= (a CompressedDataCube, or a DataCube "
                "with basis=) to the constructor or call attach_datacube()"
            )
        if self._compressed_data_or_none() is None:
            from py4dstem_compressed.compression.compress import compress

            if self._basis is None:
                raise ValueError("a DataCube needs basis= to be compressed")
            self._basis.check_detector(self._datacube.data.shape[-2:], what="the DataCube")
            self._datacube = compress(
                self._datacube, self._basis, mode=self._compression_mode, progress_bar=progress_bar
            )
        data = self._datacube
        if data.basis is not self._basis and self._basis is not None:
            if data.basis.masks.shape != self._basis.masks.shape or not np.array_equal(
                data.basis.masks, self._basis.masks
            ):
                raise ValueError("the attached data were compressed on a different basis")
        self._basis = data.basis
        self._compression_mode = data.mode
        return data

    def _positions_to_use(self, valid: np.ndarray) -> np.ndarray | None:
        """Scan positions to reconstruct from: the requested ones holding a complete pattern.

        Parameters
        ----------
        valid : numpy.ndarray of bool
            ``(Rx, Ry)``: which patterns the data hold (False: missing, stored as NaN).

        Returns
        -------
        numpy.ndarray of bool or None
            ``(Rx, Ry)`` mask of the positions used (None: all of them).

        Warns
        -----
        UserWarning
            When patterns are missing, saying how many.
        """
        requested = self._requested_positions_mask
        if requested is not None:
            requested = np.asarray(requested, dtype=bool)
            if requested.shape != valid.shape:
                raise ValueError(
                    f"positions_mask must have the scan shape {valid.shape}, got {requested.shape}"
                )
        total = valid.size
        num_complete = int(np.count_nonzero(valid))
        if num_complete == 0:
            raise ValueError(
                f"all {total} patterns of the data are missing (valid is False everywhere, "
                "values NaN): nothing to reconstruct; write patterns into the file first"
            )
        if num_complete == total:
            return requested
        used = valid if requested is None else valid & requested
        if not used.any():
            raise ValueError(
                f"positions_mask selects none of the {num_complete} complete patterns; "
                "select positions where CompressedDataCube.valid is True"
            )
        selected = "" if requested is None else f" ({int(used.sum())} selected by positions_mask)"
        warnings.warn(
            f"{total - num_complete} of {total} patterns are missing (NaN); reconstructing "
            f"from the {num_complete} complete ones{selected}",
            UserWarning,
            stacklevel=3,
        )
        return used

    def _scan_positions_to_use(self, valid: np.ndarray):
        """``initial_scan_positions`` [Å] of the positions used (None: the raster)."""
        positions = self._scan_positions
        used = self._positions_mask
        if positions is None or used is None:
            return positions
        positions = np.asarray(positions)
        requested = self._requested_positions_mask
        if len(positions) == valid.size:
            return positions[used.ravel()]
        if requested is not None and len(positions) == int(np.count_nonzero(requested)):
            return positions[valid[np.asarray(requested, dtype=bool)]]
        raise ValueError(
            f"initial_scan_positions has {len(positions)} positions; give one per scan "
            f"position ({valid.size}) or one per position selected by positions_mask"
        )


def valid_patterns(data) -> np.ndarray:
    """``(Rx, Ry)`` bool: which patterns the data hold (all, for data without flags)."""
    scan_shape = tuple(int(s) for s in data.coefficients.shape[:2])
    valid = getattr(data, "valid", None)
    if valid is None:
        return np.ones(scan_shape, dtype=bool)
    return np.asarray(valid, dtype=bool)
