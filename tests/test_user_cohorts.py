"""User cohorts work in every job: a `folder:PATH` cohort whose path has several components (one with a
space) goes through the `ablation` and `atlas` figure jobs at the smoke profile, the sidecars carry the
cohort, backbone and depth as fields, and every output lands in the (relative) out dir: nothing in the
repository, nothing under the default figures folder."""
import json
from pathlib import Path
import numpy as np
from PIL import Image
from cohort_inrs.pipeline import regenerate
from cohort_inrs.atlas import page_name, read_atlas

ROOT = Path(__file__).resolve().parent.parent
OUT = 'user-cohort-figures'  # relative on purpose: it is the caller's folder, not the kernel's (nbs/figures/)

def _faces(folder:Path, n:int=12, side:int=16, seed:int=0):
    "`n` grey `side` x `side` PNGs in `folder`: a bright disc at a random place on faint noise."
    folder.mkdir(parents=True); rng = np.random.default_rng(seed); yy, xx = np.mgrid[:side, :side]
    for i in range(n):
        cx, cy = rng.uniform(side / 4, 3 * side / 4, 2); r = rng.uniform(side / 5, side / 3)
        a = 0.7 * ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r) + 0.15 * rng.random((side, side))
        Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).save(folder/f'face{i:02d}.png')

def test_folder_cohort_through_ablation_and_atlas(tmp_path, monkeypatch):
    folder = tmp_path/'a'/'b c'/'faces'; _faces(folder)  # smoke needs n_train + n_test = 7 images of at least 16 px
    spec = f'folder:{folder}@16'
    monkeypatch.setenv('COHORT_INRS_ROOT', str(tmp_path/'root'))  # where default outputs (figures/<profile>/) would go
    monkeypatch.setenv('MPLBACKEND', 'Agg'); monkeypatch.chdir(tmp_path)
    rs = regenerate(profile='smoke', only=['ablation', 'atlas'], cohorts=spec, out_dir=OUT, runs_dir=tmp_path/'runs',
                    report=False, progress=False)
    assert [(r['name'], r['status']) for r in rs] == [('ablation', 'ok'), ('atlas', 'ok')], [r.get('message') for r in rs]
    out = tmp_path/OUT
    for f in ('ablation.png', 'ablation.pdf', 'ablation.json', 'atlas.json', 'atlas/index.html'): assert (out/f).is_file(), f
    assert not (tmp_path/'root'/'figures').exists() and not (ROOT/'nbs'/'figures'/OUT).exists()  # nothing outside the out dir
    abl = json.loads((out/'ablation.json').read_text())['numbers']
    ds = sorted({v['depth'] for v in abl['per_scan'].values()})
    assert sorted((v['cohort'], v['backbone'], v['depth']) for v in abl['per_scan'].values()) == [(spec, b, d) for b in ('ffmlp', 'siren') for d in ds]
    assert all(k == f"{v['cohort']}/{v['backbone']}/l{v['depth']}" for k, v in abl['per_scan'].items())  # the readable keys are kept
    assert set(abl['C6']['values']['max_drop_A']) == {'siren', 'ffmlp'} and abl['C6']['verdict']
    pages = json.loads((out/'atlas.json').read_text())['numbers']['pages']
    assert {(p['cohort'], p['backbone']) for p in pages.values()} == {(spec, 'siren'), (spec, 'ffmlp')}
    for f, p in pages.items():
        assert f == page_name(spec, p['backbone'], p['depth']) and read_atlas(out/'atlas'/f)['meta']['cohort'] == spec
