import subprocess
import sys

SCRIPT = """
import numpy as np
from py4dstem_compressed.analysis.evaluation import own_peak_memory_mb
before = own_peak_memory_mb()
block = np.ones(256 * 2**20 // 8)  # 256 MiB, touched
print(before, own_peak_memory_mb())
"""


def test_own_peak_memory_is_this_process_high_water_mark_in_mb():
    # a fresh process: its peak is its own (not the test runner's) and grows by the block
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    before, after = map(float, out.stdout.split())
    assert 0 < before
    assert 240 <= after - before <= 300
