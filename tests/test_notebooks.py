"""Run every notebook under nbs/ through `nbdev-test`, one pytest test per notebook.

nbdev-test prints `Success.`, which CI does not count; wrapping it here gives one named, counted
result per notebook. Figure notebooks run with their default (smoke) parameters, with outputs and
cache redirected to a temporary folder so the working tree stays clean."""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT/'nbs').rglob('*.ipynb')
                   if '.ipynb_checkpoints' not in p.parts and not p.name.startswith(('_', '.')))

def test_notebooks_found():
    assert any(n.startswith('nbs/00_config') for n in NOTEBOOKS), NOTEBOOKS

@pytest.mark.parametrize('nb', NOTEBOOKS)
def test_notebook(nb, tmp_path):
    env = {**os.environ, 'COHORT_INRS_CACHE': str(tmp_path/'cache'), 'COHORT_INRS_ROOT': str(tmp_path/'root'),
           'MPLBACKEND': 'Agg'}
    nbdev_test = Path(sys.executable).parent/'nbdev-test'
    r = subprocess.run([str(nbdev_test), nb, '--n-workers', '0'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{nb} failed under nbdev-test:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
