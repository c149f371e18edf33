"""Specimens of the simulations: periodic SrTiO3 and MoS2 cells with point defects.

:func:`build_structure` returns the ASE atoms of a periodic cell at least
``preset.field_of_view`` wide, the centred scan's start in that cell, and the defects (vacancies
and heavier substitutions) placed at random in distinct atomic columns inside the scanned area
(seeded by ``preset.structure_seed``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from py4dstem_compressed.simulation.presets import SimulationPreset

if TYPE_CHECKING:
    import ase

__all__ = [
    "MOS2_LATTICE_CONSTANT",
    "MOS2_THICKNESS",
    "SRTIO3_LATTICE_CONSTANT",
    "build_structure",
]

SRTIO3_LATTICE_CONSTANT = 3.905  # [A]
MOS2_LATTICE_CONSTANT = 3.18  # [A]
MOS2_THICKNESS = 3.19  # S-S distance [A]

#: Largest strain [dimensionless] accepted to make the rectangular MoS2 supercell square
#: (1.5 %: small against the 0.35-1.2 A detail the benchmarks score).
MAX_MOS2_STRAIN = 0.015
#: Defects stay this far [A] inside the scanned area (at most 1 A, at most a fifth of the scan):
#: a defect on the scan's edge is barely illuminated.
DEFECT_EDGE_MARGIN = 1.0
#: Atoms closer than this [A] in projection share a column: one defect per column.
SAME_COLUMN_DISTANCE = 0.5
#: Cell sizes are rounded up to whole unit cells with this tolerance [unit cells], so a field of
#: view of exactly n cells is not rounded up to n + 1 by floating-point error.
WHOLE_CELL_TOLERANCE = 1e-6


def _pick_in_scan(atoms, candidates, preset, scan_start, count, rng, exclude=()):
    """Random indices among ``candidates``, in distinct atomic columns inside the scan.

    Columns already holding an index of ``exclude`` are avoided too; if the scanned area has
    too few candidates, atoms outside it (or sharing a column) fill up the count.
    """
    margin = min(DEFECT_EDGE_MARGIN, 0.2 * min(preset.scan_extent))
    xy = atoms.positions[:, :2]
    lo = np.asarray(scan_start) + margin
    hi = np.asarray(scan_start) + np.asarray(preset.scan_extent) - margin
    inside = np.all((xy >= lo) & (xy <= hi), axis=1)
    exclude = list(exclude)
    pool = [int(i) for i in candidates if i not in exclude]
    order = [pool[i] for i in rng.permutation(len(pool))]
    order.sort(key=lambda i: not inside[i])  # stable: inside the scan first, random within
    chosen: list[int] = []
    for distinct in (True, False):
        for i in order:
            if len(chosen) == count:
                return chosen
            taken = [xy[j] for j in chosen + exclude]
            if i in chosen or (
                distinct and any(np.linalg.norm(xy[i] - t) < SAME_COLUMN_DISTANCE for t in taken)
            ):
                continue
            chosen.append(i)
    return chosen


def _apply_defects(atoms, vacancy_symbols, substitution, preset, scan_start):
    """Remove ``preset.num_vacancies`` atoms and substitute ``preset.num_substitutions``.

    Returns the changed atoms and one dict per defect (type, symbol, position [A]).
    """
    rng = np.random.default_rng(preset.structure_seed)
    symbols = np.array(atoms.get_chemical_symbols())
    vac_candidates = np.nonzero(np.isin(symbols, vacancy_symbols))[0]
    vacancies = _pick_in_scan(atoms, vac_candidates, preset, scan_start, preset.num_vacancies, rng)
    sub_candidates = np.nonzero(symbols == substitution[0])[0]
    subs = _pick_in_scan(
        atoms, sub_candidates, preset, scan_start, preset.num_substitutions, rng, vacancies
    )
    defects = [
        {"type": "vacancy", "symbol": str(symbols[i]), "position": atoms.positions[i].tolist()}
        for i in vacancies
    ] + [
        {
            "type": "substitution",
            "symbol": substitution[1],
            "replaces": substitution[0],
            "position": atoms.positions[i].tolist(),
        }
        for i in subs
    ]
    for i in subs:
        atoms[i].symbol = substitution[1]
    del atoms[vacancies]
    return atoms, defects


def _srtio3_slab(preset: SimulationPreset):
    """SrTiO3 [001], ``n x n`` unit cells wide and ``thickness / a`` (rounded) thick."""
    import ase

    a = SRTIO3_LATTICE_CONSTANT
    unit = ase.Atoms(
        "SrTiOOO",
        scaled_positions=[
            (0, 0, 0.25),
            (0.5, 0.5, 0.75),
            (0.5, 0.5, 0.25),
            (0.5, 0, 0.75),
            (0, 0.5, 0.75),
        ],
        cell=[a, a, a],
        pbc=True,
    )
    n = max(1, math.ceil(preset.field_of_view / a - WHOLE_CELL_TOLERANCE))
    nz = max(1, round(preset.thickness / a))
    atoms = unit.repeat((n, n, nz))
    info = {"material": "SrTiO3", "zone_axis": "[001]", "unit_cells": [n, n, nz], "strain": 0}
    return atoms, info, ("Sr", "Ti"), ("Sr", "Ba")


def _mos2_monolayer(preset: SimulationPreset):
    """2H-MoS2 monolayer in a square supercell (strained by at most ``MAX_MOS2_STRAIN``)."""
    from abtem import orthogonalize_cell
    from ase.build import mx2

    a = MOS2_LATTICE_CONSTANT
    hexagonal = mx2("MoS2", kind="2H", a=a, thickness=MOS2_THICKNESS, vacuum=preset.vacuum)
    unit = orthogonalize_cell(hexagonal)  # rectangular a x a sqrt(3) cell
    b = unit.cell[1, 1]
    # a square supercell: n a ~ m b, strained along y to be exactly square
    n = max(1, math.ceil(preset.field_of_view / a - WHOLE_CELL_TOLERANCE))
    while True:
        m = max(1, round(n * a / b))
        strain = n * a / (m * b) - 1
        if abs(strain) <= MAX_MOS2_STRAIN:
            break
        n += 1
    atoms = unit.repeat((n, m, 1))
    cell = atoms.cell.array.copy()
    cell[1, 1] = n * a
    atoms.set_cell(cell, scale_atoms=True)
    info = {"material": "MoS2", "zone_axis": "[001]", "unit_cells": [n, m, 1]}
    info["strain"] = float(strain)
    return atoms, info, ("S",), ("Mo", "W")


def build_structure(
    preset: SimulationPreset, kind: str
) -> tuple[ase.Atoms, list[dict], dict, tuple[float, float]]:
    """Periodic specimen with point defects and the start of the centred scan.

    Parameters
    ----------
    preset : SimulationPreset
        Field of view, thickness, scan and defect counts.
    kind : {"crystal", "2d"}
        SrTiO3 [001] slab (cation vacancies, Sr -> Ba) or MoS2 monolayer (S vacancies,
        Mo -> W).

    Returns
    -------
    atoms : ase.Atoms
        The defective periodic cell.
    defects : list of dict
        ``type`` ("vacancy" or "substitution"), ``symbol``, ``position`` [A] (and ``replaces``).
    info : dict
        ``material``, ``zone_axis``, ``unit_cells``, ``strain``, ``formula``.
    scan_start : (float, float)
        First probe position [A], centring the scan in the cell.

    Raises
    ------
    ValueError
        For an unknown ``kind``, or a scan larger than the cell.
    """
    if kind == "crystal":
        atoms, info, vacancy_symbols, substitution = _srtio3_slab(preset)
    elif kind == "2d":
        atoms, info, vacancy_symbols, substitution = _mos2_monolayer(preset)
    else:
        raise ValueError(f"kind must be 'crystal' or '2d', got {kind!r}")
    extent = atoms.cell.lengths()[:2]
    scan_start = tuple(float((e - s) / 2) for e, s in zip(extent, preset.scan_extent))
    if min(scan_start) < 0:
        raise ValueError(f"the scan {preset.scan_extent} A does not fit in the cell {extent} A")
    atoms, defects = _apply_defects(atoms, vacancy_symbols, substitution, preset, scan_start)
    info["formula"] = atoms.get_chemical_formula()
    return atoms, defects, info, scan_start
