"""Stage 3: the compressed dataset as an EMD object, and reading it from files."""
