"""Figure notebooks follow the template: a tagged `parameters` cell that papermill can fully parse
(nbdev-clean keeps the tag), and injected parameters really reach the run."""
import json, os
from pathlib import Path
import nbformat, papermill as pm, pytest

ROOT = Path(__file__).resolve().parent.parent
FIGS = sorted((ROOT/'nbs'/'figures').glob('*.ipynb'))

@pytest.mark.parametrize('nb', FIGS, ids=[p.stem for p in FIGS])
def test_parameters_cell_parses(nb):
    cells = [c for c in nbformat.read(nb, 4).cells if 'parameters' in c.metadata.get('tags', [])]
    assert len(cells) == 1, f"{nb.name}: needs exactly one cell tagged 'parameters'"
    lines = [l for l in cells[0].source.splitlines() if l.strip() and not l.lstrip().startswith('#')]
    params = pm.inspect_notebook(str(nb))
    # a comment containing '=' (among others) makes papermill skip the line silently
    assert len(params) == len(lines), f"{nb.name}: papermill parsed {sorted(params)} from {lines}"
    for required in ('profile', 'device', 'out_dir'):
        assert required in params, f"{nb.name}: parameter {required!r} missing"
    assert params['profile']['default'] == "'smoke'", 'figure defaults must be the smoke profile'

def test_injected_parameters_reach_the_run(tmp_path):
    nb = ROOT/'nbs'/'figures'/'cohorts.ipynb'
    pm.execute_notebook(str(nb), str(tmp_path/'run.ipynb'), kernel_name='python3', progress_bar=False,
                        cwd=str(nb.parent), parameters=dict(profile='smoke', cohorts='digits@8', out_dir=str(tmp_path/'out')))
    side = json.loads((tmp_path/'out'/'cohorts.json').read_text())
    assert list(side['numbers']) == ['digits@8'] and side['params']['cohorts'] == 'digits@8'
    assert (tmp_path/'out'/'cohorts.png').exists() and (tmp_path/'out'/'cohorts.pdf').exists()
