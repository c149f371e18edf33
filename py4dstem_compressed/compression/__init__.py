"""Stage 2: projecting frames onto a basis (fused kernels, in memory, on dask, live writer)."""
