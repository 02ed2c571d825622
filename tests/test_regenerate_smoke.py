"""End to end: `cohort-inrs regenerate --profile smoke` into a temporary folder makes every expected
output, the manifest and the claims table; a second run reuses every cached artifact."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from cohort_inrs.pipeline import JOBS

ROOT = Path(__file__).resolve().parent.parent

def _regenerate(tmp_path, cache):
    env = {**os.environ, 'COHORT_INRS_CACHE': str(cache), 'COHORT_INRS_ROOT': str(tmp_path/'root'), 'MPLBACKEND': 'Agg'}
    exe = Path(sys.executable).parent/'cohort-inrs'
    return subprocess.run([str(exe), 'regenerate', '--profile', 'smoke', '--out-dir', str(tmp_path/'figs')],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)

def _artifacts(cache):
    return {p.relative_to(cache).as_posix(): p.stat().st_mtime_ns for p in cache.rglob('*.safetensors')}

def test_smoke_regeneration_end_to_end(tmp_path):
    cache = tmp_path/'cache'
    r = _regenerate(tmp_path, cache)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    figs = tmp_path/'figs'
    for job in JOBS:
        for out in job.outputs: assert (figs/out).exists(), f'{job.name}: {out} missing'
    manifest = json.loads((figs/'manifest.json').read_text())
    listed = json.dumps(manifest)
    for job in JOBS: assert job.name in listed
    claims = (figs/'claims.md').read_text()
    for cid in ('C1', 'C2', 'C3', 'C4', 'C5', 'C6'):
        line = next(l for l in claims.splitlines() if l.startswith(f'| {cid}'))
        assert 'not measured' not in line, line  # every claim is measured by some figure
    kinds = {k.split('/')[0] for k in _artifacts(cache)}
    assert {'cohort', 'sweep', 'sae', 'ablation'} <= kinds, kinds
    # second run: nothing expensive is rebuilt (every cached artifact keeps its file)
    before = _artifacts(cache)
    r2 = _regenerate(tmp_path, cache)
    assert r2.returncode == 0, r2.stdout[-4000:] + r2.stderr[-4000:]
    assert _artifacts(cache) == before
