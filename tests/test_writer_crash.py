"""The live writer killed (SIGKILL) right after each step it takes, one step at a time.

A forked child runs a fixed acquisition -- a fresh write, a replace that overlaps
complete frames and missing ones, a last write, finalize -- and kills itself
right after step ``i`` (the writer's ``_after_step`` hook), for every ``i``. The
parent then reopens the file and compares it bit for bit with snapshots of an
uninterrupted run: every frame is wholly old, wholly new, or missing (NaN and
``valid`` False). Finally it resumes the acquisition and checks that the
finished file is finalized, identical to the uninterrupted one, with no
temporary file left behind.
"""

import os
import signal
import traceback

import h5py
import numpy as np
import pytest

import py4dstem_compressed as pc
from py4dstem_compressed.compression import writer as writer_module
from py4dstem_compressed.compression.writer import open_compressed_writer

SCAN = (3, 4)
FIELDS = ("coefficients", "perpendicular_norms", "edge_intensity", "total_intensity")
FIELDS += ("center_of_mass",)


@pytest.fixture(scope="module")
def basis(geometry):
    return pc.zernike_basis(geometry, 10, 1)


@pytest.fixture(scope="module")
def batches(datacube):
    """``(frames, start, replace)`` of each write: fresh, replace over old and missing, fresh."""
    frames = datacube.data.reshape(64, 32, 32)[:12].copy()
    other = datacube.data.reshape(64, 32, 32)[30:42].copy()  # other patterns, other values
    return [(frames[0:6], 0, False), (other[3:10], 3, True), (frames[10:12], 10, False)]


def in_child(function, *args) -> int:
    """Run ``function(*args)`` in a forked child; return its wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        code = 0
        try:
            function(*args)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def acquire(path, basis, batches, log, kill_at=None, snapshots=None) -> None:
    """The acquisition; with ``kill_at``, SIGKILL right after that step (1-based).

    Before the kill, h5py's buffers are flushed: every byte the writer has
    issued reaches the file (HDF5 may write its buffers out at any moment),
    the worst case for the order of the writes.
    """
    phase = ["create"]
    count = [0]
    opened = []

    def after_step(step: str) -> None:
        count[0] += 1
        with open(log, "a") as f:
            f.write(f"{phase[0]}\t{step}\n")
        if count[0] == kill_at:
            if opened and opened[0].file is not None:
                opened[0].file.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    writer_module._after_step = after_step
    writer = open_compressed_writer(path, basis, SCAN)
    opened.append(writer)
    for number, (frames, start, replace) in enumerate(batches, 1):
        phase[0] = str(number)
        writer.write(frames, start, replace=replace)
        if snapshots is not None:
            state = {key: writer.datasets[key][()] for key in FIELDS}
            np.savez(snapshots / f"state{number}.npz", valid=writer.valid_dataset[()], **state)
    phase[0] = "finalize"
    writer.close()


def per_frame(data: dict) -> np.ndarray:
    """``(frames, values)`` float32 rows (every stored value of a frame), NaN where not valid."""
    rows = np.concatenate([np.asarray(data[k], np.float32).reshape(12, -1) for k in FIELDS], 1)
    rows[~np.asarray(data["valid"], bool).ravel()] = np.nan
    return rows


def read_state(path) -> tuple[np.ndarray, np.ndarray]:
    data = pc.read_compressed(path)
    arrays = {key: getattr(data, key) for key in FIELDS}
    return per_frame({**arrays, "valid": data.valid}), data.valid.ravel()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def is_finalized(path) -> bool:
    with h5py.File(path, "r") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if n.endswith("_coefficients/data") else None)
        return f[names[0]].chunks is not None and f[names[0]].compression is not None


def check_crash_state(path, phase: str, states: list) -> None:
    """Each frame: wholly the state before the interrupted write, wholly after it, or missing."""
    if phase == "create":
        if not path.exists():
            return
        rows, valid = read_state(path)
        assert not valid.any() and np.isnan(rows).all()
        return
    number = len(states) - 1 if phase == "finalize" else int(phase)
    old, new = states[number - 1] if phase != "finalize" else states[number], states[number]
    rows, valid = read_state(path)
    for frame in range(12):
        if not valid[frame]:
            assert np.isnan(rows[frame]).all(), (phase, frame)
            continue
        assert np.isfinite(rows[frame]).all(), (phase, frame)
        assert same_bits(rows[frame], old[frame]) or same_bits(rows[frame], new[frame]), (
            f"frame {frame} after a kill during {phase}: neither old nor new values"
        )
    if phase == "finalize":
        assert valid.all()


def resume(path, basis, batches) -> None:
    """What a user does after a crash: reopen; redo the writes unless the scan is complete."""
    if path.exists() and pc.read_compressed(path).is_complete and is_finalized(path):
        return
    with open_compressed_writer(path, basis, SCAN, durable=False) as writer:
        assert not list(path.parent.glob("*.tmp")), "reopening leaves a stale temporary file"
        if writer.num_complete < writer.num_frames:
            for frames, start, _ in batches:
                writer.write(frames, start, replace=True)


@pytest.fixture(scope="module")
def reference(basis, batches, tmp_path_factory):
    """Snapshots of an uninterrupted run: per-frame rows after each write, and the step log."""
    folder = tmp_path_factory.mktemp("reference")
    log = folder / "steps.log"
    status = in_child(acquire, folder / "live.h5", basis, batches, log, None, folder)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    states = [np.full((12, basis.num_masks + 6), np.nan, np.float32)]
    for number in range(1, len(batches) + 1):
        states.append(per_frame(dict(np.load(folder / f"state{number}.npz"))))
    final, valid = read_state(folder / "live.h5")
    assert valid.all() and same_bits(final, states[-1]) and is_finalized(folder / "live.h5")
    steps = log.read_text().splitlines()
    return states, steps


def test_reference_run_covers_every_kind_of_step(reference):
    states, steps = reference
    phases = [line.split("\t") for line in steps]
    assert {"create", "1", "2", "3", "finalize"} == {p for p, _ in phases}
    assert ("2", "write: clear valid row 0") in {tuple(p) for p in phases}  # the replace
    assert sum(p == "finalize" for p, _ in phases) >= 4
    replaced = slice(3, 6)  # complete in state 1, replaced by the second write
    assert not np.array_equal(states[1][replaced], states[2][replaced])


def test_sigkill_after_every_step_leaves_old_new_or_missing_frames(
    reference, basis, batches, tmp_path
):
    states, steps = reference
    for kill_at in range(1, len(steps) + 1):
        folder = tmp_path / f"kill{kill_at}"
        folder.mkdir()
        path, log = folder / "live.h5", folder / "steps.log"
        status = in_child(acquire, path, basis, batches, log, kill_at)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, kill_at
        phase, step = log.read_text().splitlines()[-1].split("\t")
        assert [phase, step] == steps[kill_at - 1].split("\t")
        check_crash_state(path, phase, states)
        resume(path, basis, batches)
        final, valid = read_state(path)
        assert valid.all() and same_bits(final, states[-1]), (kill_at, phase, step)
        assert is_finalized(path), (kill_at, phase, step)
        assert sorted(p.name for p in folder.iterdir()) == ["live.h5", "steps.log"], kill_at
