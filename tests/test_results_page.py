"""The results a reader sees are rendered, not typed: a regeneration on another machine (numbers moved a little, a
sub-verdict flipped) must render on the index page and pass the index's own checks."""
import json, os, shutil, subprocess, sys
from pathlib import Path
from cohort_inrs.pipeline import claims_report, results_markdown, check_results

ROOT = Path(__file__).resolve().parent.parent

def _perturb(o, f=1.013):
    "Every float of a sidecar moved by 1.3% (what another CPU does to trained numbers, and more); ints and strings kept."
    if isinstance(o, dict): return {k: _perturb(v, f) for k, v in o.items()}
    if isinstance(o, list): return [_perturb(v, f) for v in o]
    return o * f if isinstance(o, float) else o

def other_machine(tmp_path):
    "A copy of figures/cpu as another machine might regenerate it: every number perturbed, C3's verdict flipped."
    out = tmp_path/'figures'/'cpu'; out.mkdir(parents=True)
    for p in (ROOT/'figures'/'cpu').iterdir():
        if p.suffix in ('.png', '.md', '.csv'): shutil.copy(p, out/p.name)
        elif p.suffix == '.json' and p.stem not in ('claims', 'manifest'): (out/p.name).write_text(json.dumps(_perturb(json.loads(p.read_text()))))
    side = json.loads((out/'cohort_fit.json').read_text()); side['numbers']['C3']['verdict'] = 'reproduced'
    (out/'cohort_fit.json').write_text(json.dumps(side))
    claims_report('cpu', out)
    return out

def test_perturbed_regeneration_renders(tmp_path):
    out = other_machine(tmp_path)
    rows = check_results(out)
    assert rows['C3']['verdict'] == 'reproduced' and rows['C6']['headline'] != json.loads((ROOT/'figures'/'cpu'/'claims.json').read_text())['claims'][5]['headline']
    md = results_markdown(out, 'x/')
    assert '| C3 | **reproduced** |' in md and md.count('\n| C') == 6 and '![ablation](x/ablation.png)' in md

def test_index_passes_on_a_perturbed_regeneration(tmp_path):
    "The index notebook, executed against another machine's results, passes (no string ties it to one machine's floats)."
    out = other_machine(tmp_path)
    env = {**os.environ, 'COHORT_INRS_RESULTS': str(out), 'COHORT_INRS_CACHE': str(tmp_path/'cache'), 'MPLBACKEND': 'Agg'}
    r = subprocess.run([str(Path(sys.executable).parent/'nbdev-test'), 'nbs/index.ipynb', '--n-workers', '0'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

def test_index_fails_on_a_broken_report(tmp_path):
    "The check cell can fail: a claims report whose counts do not add up stops the index."
    out = other_machine(tmp_path)
    data = json.loads((out/'claims.json').read_text()); data['summary']['reproduced'] += 1
    (out/'claims.json').write_text(json.dumps(data))
    env = {**os.environ, 'COHORT_INRS_RESULTS': str(out), 'COHORT_INRS_CACHE': str(tmp_path/'cache'), 'MPLBACKEND': 'Agg'}
    r = subprocess.run([str(Path(sys.executable).parent/'nbdev-test'), 'nbs/index.ipynb', '--n-workers', '0'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and 'AssertionError' in r.stdout + r.stderr
