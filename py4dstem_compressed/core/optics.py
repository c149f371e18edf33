"""Electron optics: the package's electron wavelength.

Two places keep the wavelength of the library they feed, on purpose: the reconstruction uses
py4DSTEM's (its probe and ours must agree to the last bit: they differ from this one by
1e-7 relative, older constants), the abTEM simulations use abTEM's (5e-9 relative).
"""

from __future__ import annotations

import numpy as np

__all__ = ["electron_wavelength_angstrom"]

#: Electron rest energy m0 c^2 [eV] (CODATA 2018).
ELECTRON_REST_ENERGY_EV = 510998.95
#: Planck constant times the speed of light, h c [eV A] (CODATA 2018).
PLANCK_TIMES_LIGHT_SPEED_EV_ANGSTROM = 12398.419843320026


def electron_wavelength_angstrom(energy_ev: float) -> float:
    """Relativistic electron wavelength [A] at a beam energy [eV] (> 0).

    ``lambda = h c / sqrt(E (2 m0 c^2 + E))``; 80 keV gives 0.0418 A, as py4DSTEM's
    ``electron_wavelength_angstrom`` and abTEM's ``energy2wavelength``.
    """
    energy_ev = float(energy_ev)
    if not np.isfinite(energy_ev) or energy_ev <= 0:
        raise ValueError(f"energy must be a positive beam energy in eV, got {energy_ev!r}")
    return PLANCK_TIMES_LIGHT_SPEED_EV_ANGSTROM / np.sqrt(
        energy_ev * (2 * ELECTRON_REST_ENERGY_EV + energy_ev)
    )
