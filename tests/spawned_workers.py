"Workers for tests/test_bench.py's `spawn_group` tests: spawned processes import them from here."
import os
from pathlib import Path

def write_then_abort(rank, out, write):
    "Rank 0 writes `out` if `write`; then every rank aborts, as a crash in a process-group teardown would."
    if rank == 0 and write: Path(out).write_text('{"step_s": 1.0}')
    os.abort()
