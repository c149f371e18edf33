"""Test and demo data: abTEM simulations, presets, a NumPy forward model."""
