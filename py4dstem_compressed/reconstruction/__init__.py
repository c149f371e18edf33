"""Stage 4: ptychography on compressed data (py4DSTEM subclasses and data step).

Modules, top to bottom: ``ptychography`` (the four classes: single-slice, multislice and
their mixed-state twins) on ``compressed_base`` (what they share), itself on ``preprocess``,
``data_selection``, ``field_of_view`` and ``data_step`` (its mixins) and ``arguments``
(argument checks); the pure data step in ``projection`` (with ``region_matching``),
``operator`` (masks in py4DSTEM's frame), ``options`` (weights and switches) and
``position_correction``; ``py4dstem_internals`` lists every py4DSTEM internal used.
"""
