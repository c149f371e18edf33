"""py4dstem-compressed: compressed 4D-STEM data for py4DSTEM multislice ptychography.

Data flow, one subpackage per stage: ``bases`` (:class:`DetectorGeometry` and the basis
generators :func:`zernike_basis`, :func:`binning_basis`, :func:`diffraction_pattern_basis`,
:func:`pca_basis`) -> ``compression`` (:func:`compress`, :func:`open_compressed_writer`) ->
``storage`` (:class:`CompressedDataCube`, an EMD object: ``py4DSTEM.save`` / ``py4DSTEM.read``)
-> ``reconstruction`` (:class:`CompressedMultislicePtychography` and its single-slice and
mixed-state twins) -> ``analysis`` (angles,
FSC, registration, plots). ``core`` holds what every stage uses; ``simulation`` makes test
and demo data.

Importing this package registers its EMD classes with emdfile (``_emd_hook``);
import it before ``py4DSTEM.read`` on a file that holds them.
"""

from py4dstem_compressed.analysis.angle_curves import AngleCurves, angle_curves
from py4dstem_compressed.analysis.basis_suggestion import suggest_basis
from py4dstem_compressed.analysis.metrics import BasisAngles, basis_angles, stored_compression_ratio
from py4dstem_compressed.analysis.registration import register_to_ground_truth
from py4dstem_compressed.analysis.resolution import fourier_shell_correlation
from py4dstem_compressed.bases.basis import Basis, compression_ratio
from py4dstem_compressed.bases.data_derived import diffraction_pattern_basis, pca_basis
from py4dstem_compressed.bases.fixed_masks import binning_basis, zernike_basis
from py4dstem_compressed.bases.geometry import DetectorGeometry
from py4dstem_compressed.compression.compress import compress
from py4dstem_compressed.compression.writer import CompressedWriter, open_compressed_writer
from py4dstem_compressed.core.emd import emd_class_name, save
from py4dstem_compressed.core.filtered_arrays import StorageOptions
from py4dstem_compressed.reconstruction.ptychography import (
    CompressedMixedstateMultislicePtychography,
    CompressedMixedstatePtychography,
    CompressedMultislicePtychography,
    CompressedSingleslicePtychography,
)
from py4dstem_compressed.storage.compressed_datacube import CompressedDataCube
from py4dstem_compressed.storage.reading import read_compressed
from py4dstem_compressed.version import FORMAT_VERSION, __version__

#: emdfile looks for EMD classes in imported modules that set this flag.
_emd_hook = True

# Files name their classes "<Class> (written by py4dstem-compressed: run `import ...`)" so
# that reading without the plugin fails with a message saying what to do; register those
# names here so that emdfile finds the classes once the plugin is imported.
for _cls in (
    Basis,
    CompressedDataCube,
    CompressedSingleslicePtychography,
    CompressedMultislicePtychography,
    CompressedMixedstatePtychography,
    CompressedMixedstateMultislicePtychography,
):
    globals()[emd_class_name(_cls)] = _cls
del _cls

__all__ = [
    "FORMAT_VERSION",
    "AngleCurves",
    "Basis",
    "BasisAngles",
    "CompressedDataCube",
    "CompressedMixedstateMultislicePtychography",
    "CompressedMixedstatePtychography",
    "CompressedMultislicePtychography",
    "CompressedSingleslicePtychography",
    "CompressedWriter",
    "DetectorGeometry",
    "StorageOptions",
    "__version__",
    "angle_curves",
    "basis_angles",
    "binning_basis",
    "compress",
    "compression_ratio",
    "diffraction_pattern_basis",
    "fourier_shell_correlation",
    "open_compressed_writer",
    "pca_basis",
    "read_compressed",
    "register_to_ground_truth",
    "save",
    "stored_compression_ratio",
    "suggest_basis",
    "zernike_basis",
]


def __getattr__(name):
    # `pc.datasets` (the abTEM simulations) is imported on first use: abTEM is an optional
    # extra and slow to import.
    if name == "datasets":
        import importlib

        return importlib.import_module("py4dstem_compressed.simulation.datasets")
    raise AttributeError(f"module 'py4dstem_compressed' has no attribute {name!r}")
