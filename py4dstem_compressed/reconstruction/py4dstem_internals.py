"""The fence around py4DSTEM: every py4DSTEM internal the reconstruction relies on.

The compressed classes subclass py4DSTEM's ptychography classes (:data:`PY4DSTEM_CLASSES`:
``CompressedMultislicePtychography`` subclasses ``MultislicePtychography``, and so on) and
keep py4DSTEM's ``reconstruct`` loop. One mixin holds everything they share, so the names
below are those of the four classes together (names of the multislice classes only are
marked so). That loop, and the preprocessing helpers reused here,
are not a public API: the names below were read from **py4DSTEM 0.14.18** (the version in
:data:`PY4DSTEM_VERSION`). ``tests/test_py4dstem_fence.py`` checks that every listed name
still exists in the installed py4DSTEM and that the reconstruction modules use no py4DSTEM
private name missing from this list; the complete-basis parity tests of
``tests/test_ptychography.py`` and ``tests/test_ptychography_family.py`` (identical iterates
to py4DSTEM's own, for each class) are the gate for a py4DSTEM upgrade.

Mixed-state classes
-------------------
py4DSTEM's mixed-state classes hand the hooks exit waves ``(N, M, Sx, Sy)`` (``M`` probe
modes) and hold the probe as ``(M, Sx, Sy)``; the data step reads the shape (a 4-d exit wave
is a mixed state). Their ``_position_correction`` argument ``shifted_probes`` is, as for the
single-mode classes, the sub-pixel shifted probes for the single-slice classes and the
unshifted probe (``self._probe``) for the multislice ones.

The measurement rows
--------------------
py4DSTEM keeps per-pixel amplitudes in ``self._amplitudes`` (``(N, Sx, Sy)``). Here each
probe position has one *measurement row* of ``K + 4`` numbers (``K`` mask coefficients, the
BF and DF perpendicular norms, the descan shift ``(dqx, dqy)`` [px]), kept under their own
name, ``self._compressed_rows`` (``(N, K + 4)`` float32). py4DSTEM's ``reconstruct`` loop
slices its batches from ``self._amplitudes`` and hands them to the overridden hooks; so,
and only so, ``reconstruct`` binds ``self._amplitudes`` to the rows for the duration of
py4DSTEM's loop and removes it afterwards. Inherited public methods that read or write
``self._amplitudes`` as pixels are disabled (:data:`DISABLED_PIXEL_METHODS`).

This module is data only: importing it has no effect.
"""

from __future__ import annotations

__all__ = [
    "DISABLED_PIXEL_METHODS",
    "OTHER_PRIVATE_NAMES",
    "OVERRIDDEN_METHODS",
    "PRIVATE_ATTRIBUTES_READ",
    "PRIVATE_ATTRIBUTES_WRITTEN",
    "PRIVATE_METHODS_CALLED",
    "PY4DSTEM_CLASSES",
    "PY4DSTEM_VERSION",
    "ROWS_ATTRIBUTE",
    "all_private_names",
]

#: The py4DSTEM version every name below was read from.
PY4DSTEM_VERSION = "0.14.18"

#: The py4DSTEM classes subclassed (``py4DSTEM.process.phase.<name>``).
PY4DSTEM_CLASSES = (
    "SingleslicePtychography",
    "MultislicePtychography",
    "MixedstatePtychography",
    "MixedstateMultislicePtychography",
)

#: Where the measurement rows live (see the module docstring).
ROWS_ATTRIBUTE = "_compressed_rows"

#: Methods of the py4DSTEM classes (or their mixins) that the compressed classes override.
OVERRIDDEN_METHODS = {
    "__init__": "adds basis, compression_mode and default loss weights; checks arguments",
    "preprocess": "builds measurement rows from stored coefficients; never reads pixels",
    "reconstruct": "adds the compressed-loss options, then runs py4DSTEM's loop unchanged",
    "_gradient_descent_fourier_projection": "compressed data step instead of amplitude swap",
    "_projection_sets_fourier_projection": "compressed data step for DM/RAAR/RRR/GPM",
    "_position_correction": "least-squares position fit in coefficient space",
    "_constraints": "py4DSTEM's constraints, then the probe-aperture step (Eq. 12)",
    "_return_self_consistency_errors": "per-position coefficient errors, not pixel errors",
    "to_h5": "also writes basis, loss weights and compression mode",
    "_get_constructor_args": "reads basis, loss weights and compression mode back",
}

#: Inherited public methods that assume per-pixel amplitudes: they raise NotImplementedError.
DISABLED_PIXEL_METHODS = {
    "cross_correlate_amplitudes_to_probe_aperture": "shifts per-pixel _amplitudes in place",
    "slim_preprocess": "takes corner-centred per-pixel amplitudes (N, Qx, Qy)",
}

#: py4DSTEM private methods (and device helpers) the class calls.
PRIVATE_METHODS_CALLED = {
    "_calculate_intensities_center_of_mass": "CoM fit over the scan from stored centres",
    "_solve_for_center_of_mass_relative_rotation": "scan rotation / transpose from CoM",
    "_extract_intensities_and_calibrations_from_datacube": "py4DSTEM's calibration rules",
    "_calculate_scan_positions_in_pixels": "probe positions [object px]",
    "_initialize_object": "initial object, as py4DSTEM's preprocess (two signatures: "
    "with num_slices for the multislice classes, without for the single-slice ones)",
    "_initialize_probe": "initial probe scaled to the mean pattern intensity (mixed state: "
    "(M, Sx, Sy) modes)",
    "_precompute_propagator_arrays": "Fresnel propagators between slices (multislice)",
    "_extract_vectorized_patch_indices": "object patches of a batch of positions",
    "_return_shifted_probes": "sub-pixel shifted probes of a batch",
    "_overlap_projection": "exit waves of a batch (forward model)",
    "_get_emd_attr_data": "EMD nodes of a stored reconstruction (the basis)",
    "_asnumpy": "device array to NumPy (set by set_device)",
    "_scipy": "scipy or cupyx.scipy of the device (set by set_device)",
    "_xp": "array module of the compute device (set by set_device)",
    "_xp_storage": "array module of the storage device (set by set_device)",
}

#: py4DSTEM private attributes the compressed ``preprocess`` writes in place of py4DSTEM's
#: (py4DSTEM's ``reconstruct``, visualisation and saving read them).
PRIVATE_ATTRIBUTES_WRITTEN = {
    "_amplitudes": "bound to the measurement rows only while py4DSTEM's loop runs",
    "_amplitudes_shape": "detector shape [px] (read by to_h5)",
    "_num_diffraction_patterns": "number of positions used",
    "_mean_diffraction_intensity": "1: rows are in the canonical unit (loop's error scale)",
    "_datacube": "a DataCube input is replaced by its compressed data",
    "_diffraction_intensities_shape": "None: no resampling of compressed data",
    "_padded_diffraction_intensities_shape": "None: no padding of compressed data",
    "_reshaping_method": "kept for py4DSTEM's bookkeeping",
    "_dp_mask": "None: unmeasured pixels live in the basis geometry",
    "_crop_mask": "None: no cropping of compressed data",
    "_crop_mask_shape": "detector shape [px]",
    "_resample_exit_waves": "False: exit waves are never resampled",
    "_region_of_interest_shape": "detector shape [px]: the probe and exit-wave grid",
    "_positions_mask": "requested positions that hold a complete pattern",
    "_semiangle_cutoff": "from semiangle_cutoff_pixels, as py4DSTEM's preprocess",
    "_com_measured_x": "stored centres of mass [px]",
    "_com_measured_y": "stored centres of mass [px]",
    "_com_fitted_x": "fitted centres [px] (source of the descan shifts)",
    "_com_fitted_y": "fitted centres [px] (source of the descan shifts)",
    "_com_normalized_x": "py4DSTEM's normalised CoM",
    "_com_normalized_y": "py4DSTEM's normalised CoM",
    "_com_x": "rotated CoM (py4DSTEM's DPC output)",
    "_com_y": "rotated CoM (py4DSTEM's DPC output)",
    "_rotation_best_rad": "scan rotation [rad]",
    "_rotation_best_transpose": "scan transpose",
    "_positions_px": "probe positions [object px]",
    "_positions_px_initial": "initial probe positions [object px] (reset)",
    "_positions_px_initial_com": "centre of the initial positions [object px]",
    "_positions_initial": "initial probe positions [A]",
    "_object_padding_px": "object padding [px]",
    "_object": "initial object",
    "_object_initial": "initial object (reset)",
    "_object_type_initial": "object type (reset)",
    "_object_shape": "object shape [px]",
    "_object_fov_mask": "scanned field of view",
    "_object_fov_mask_inverse": "outside the scanned field of view",
    "_probe": "initial probe ((M, Sx, Sy) for mixed state; its ndim tells position "
    "correction whether py4DSTEM passed the shifted probes)",
    "_probe_initial": "initial probe (reset; aperture fallback of Eq. 12)",
    "_probe_initial_aperture": "Fourier amplitude of the initial probe",
    "_known_aberrations_array": "CTF of the known aberrations",
    "_propagator_arrays": "Fresnel propagators (multislice)",
    "_preprocessed": "reconstruct() refuses to run before preprocess()",
}

#: py4DSTEM private attributes only read (set by py4DSTEM's ``__init__`` or ``set_device``).
PRIVATE_ATTRIBUTES_READ = {
    "_angular_sampling": "detector pixel [mrad] (set by the calibration rules)",
    "_clear_fft_cache": "clear_device_mem argument",
    "_device": "compute device",
    "_storage": "storage device",
    "_verbose": "progress bar of an in-preprocess compression",
    "_energy": "beam energy [eV]",
    "_num_slices": "number of slices (multislice)",
    "_slice_thicknesses": "slice thicknesses [A] (multislice)",
    "_theta_x": "specimen tilt for the propagators [mrad] (multislice)",
    "_theta_y": "specimen tilt for the propagators [mrad] (multislice)",
    "_polar_parameters": "aberration coefficients",
    "_vacuum_probe_intensity": "probe initialisation",
    "_semiangle_cutoff_pixels": "semiangle in detector px",
    "_object_type": "'potential' or 'complex'",
    "_scan_positions": "initial_scan_positions [A]",
    "_positions_offset_ang": "position offset [A]",
}

#: Private names of other classes and modules: ``(module, class or None, name, reason)``.
OTHER_PRIVATE_NAMES = (
    ("emdfile", None, "_read_metadata", "reads the compression metadata group"),
    ("emdfile", "Metadata", "_params", "the metadata's key/value dictionary"),
    ("py4DSTEM.process.phase.utils", "ComplexProbe", "_evaluate_ctf", "known-aberration CTF"),
)


def all_private_names() -> frozenset[str]:
    """Every py4DSTEM method or attribute name listed above (overrides included)."""
    return frozenset().union(
        OVERRIDDEN_METHODS,
        DISABLED_PIXEL_METHODS,
        PRIVATE_METHODS_CALLED,
        PRIVATE_ATTRIBUTES_WRITTEN,
        PRIVATE_ATTRIBUTES_READ,
    )
