"""Stage 4: multislice ptychography on compressed data (py4DSTEM subclass and data step)."""
