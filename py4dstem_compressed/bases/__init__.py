"""Stage 1: detector geometry and the orthonormal mask bases (four families)."""
