"""py4DSTEM calibrations: the one place that builds and sets them (scan in A, detector in mrad)."""

from __future__ import annotations

__all__ = ["calibrate", "calibration_from_metadata"]


def calibrate(target, r_pixel_size_angstrom: float, q_pixel_size_mrad: float):
    """Set the scan step [A] and the detector pixel [mrad] of a py4DSTEM calibration.

    Parameters
    ----------
    target : py4DSTEM.data.Calibration or object with a ``calibration``
        The calibration itself, or a DataCube (or anything holding one as
        ``.calibration``).
    r_pixel_size_angstrom : float
        Scan step [A].
    q_pixel_size_mrad : float
        Angular size of one detector pixel [mrad].

    Returns
    -------
    py4DSTEM.data.Calibration
        The calibration that was set.
    """
    calibration = getattr(target, "calibration", target)
    calibration.set_R_pixel_size(float(r_pixel_size_angstrom))
    calibration.set_R_pixel_units("A")
    calibration.set_Q_pixel_size(float(q_pixel_size_mrad))
    calibration.set_Q_pixel_units("mrad")
    return calibration


def calibration_from_metadata(metadata):
    """A py4DSTEM ``Calibration`` holding the parameters of an emdfile ``Metadata``."""
    from py4DSTEM.data import Calibration

    calibration = Calibration()
    calibration._params.update(metadata._params)
    return calibration
