"""Foundations used by every stage: array backend, argument checks, EMD naming, frame sources."""
