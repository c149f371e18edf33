"""The four basis families by name: one registry for the demo, the CLI, benchmarks and studies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from py4dstem_compressed.bases.basis import Basis

__all__ = ["BASIS_FAMILIES", "BasisFamily", "basis_family", "build_basis"]


@dataclass(frozen=True)
class BasisFamily:
    """One family of orthonormal masks.

    Attributes
    ----------
    name : str
        Canonical name, as stored in ``Basis.kind``.
    label : str
        Name for people (tables, plot legends).
    needs_data : bool
        Whether the masks are derived from sampled patterns (then ``build`` takes the
        datacube first).
    aliases : tuple of str
        Other accepted spellings (e.g. the CLI's ``"dp"``).
    """

    name: str
    label: str
    needs_data: bool
    aliases: tuple[str, ...] = ()

    @property
    def builder(self) -> Callable[..., Basis]:
        """The public generator of this family (``pc.<name>_basis``)."""
        from py4dstem_compressed.bases import data_derived, fixed_masks

        return {
            "binning": fixed_masks.binning_basis,
            "zernike": fixed_masks.zernike_basis,
            "diffraction_pattern": data_derived.diffraction_pattern_basis,
            "pca": data_derived.pca_basis,
        }[self.name]


#: Families by canonical name, in the paper's order.
BASIS_FAMILIES = {
    family.name: family
    for family in (
        BasisFamily("binning", "binning", needs_data=False),
        BasisFamily("zernike", "Zernike", needs_data=False),
        BasisFamily("diffraction_pattern", "diffraction-pattern", True, aliases=("dp",)),
        BasisFamily("pca", "PCA", needs_data=True),
    )
}


def basis_family(name: str) -> BasisFamily:
    """The family called ``name`` (canonical name or alias); a clear error otherwise."""
    for family in BASIS_FAMILIES.values():
        if name == family.name or name in family.aliases:
            return family
    names = sorted([*BASIS_FAMILIES, *(a for f in BASIS_FAMILIES.values() for a in f.aliases)])
    raise ValueError(f"unknown basis family {name!r}; choose one of {names}")


def build_basis(family: str, geometry, datacube=None, **kwargs) -> Basis:
    """Build a basis of ``family`` with its generator's keywords.

    Parameters
    ----------
    family : str
        A family name or alias (see :data:`BASIS_FAMILIES`).
    geometry : DetectorGeometry
        Detector regions.
    datacube : optional
        The patterns data-derived families sample (required for them, ignored otherwise).
    **kwargs
        Keywords of the family's generator (``num_bf``, ``num_df``, ``seed``, ...).

    Raises
    ------
    ValueError
        For an unknown family, or a data-derived family without ``datacube``.
    """
    chosen = basis_family(family)
    if not chosen.needs_data:
        return chosen.builder(geometry, **kwargs)
    if datacube is None:
        raise ValueError(f"the {chosen.label} basis is derived from data: pass datacube=")
    return chosen.builder(datacube, geometry, **kwargs)
