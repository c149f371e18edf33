"""Stage 4: multislice ptychography on compressed data (py4DSTEM subclass and data step).

Modules, top to bottom: ``ptychography`` (the class) on ``preprocess``, ``data_selection``,
``field_of_view`` and ``data_step`` (its mixins) and ``arguments`` (argument checks); the
pure data step in ``projection`` (with ``region_matching``), ``operator`` (masks in
py4DSTEM's frame), ``options`` (weights and switches) and ``position_correction``;
``py4dstem_internals`` lists every py4DSTEM internal used.
"""
