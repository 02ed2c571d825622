"""`compare_main`: two figures folders compared number by number and claim by claim, on copies of the committed
`figures/cpu` JSON files (the images are not needed), perturbed as a regeneration on another machine would be."""
import json, re, shutil
from pathlib import Path
import pytest
from cohort_inrs.compare import compare_main, compare_figures, RUN_FILES

FIG = Path(__file__).resolve().parent.parent/'figures'/'cpu'

def json_copy(dst:Path, fn=None):
    "Copy the committed run's JSON files to `dst`, applying `fn(leaf key, value)` to every float in each sidecar's `numbers`."
    dst.mkdir(parents=True)
    for f in FIG.glob('*.json'): shutil.copy(f, dst/f.name)
    def walk(x, k=''):
        if isinstance(x, dict): return {q: walk(v, q) for q, v in x.items()}
        if isinstance(x, list): return [walk(v, k) for v in x]
        return fn(k, x) if isinstance(x, float) else x
    if fn:
        for f in dst.glob('*.json'):
            if f.name not in RUN_FILES:
                s = json.loads(f.read_text()); s['numbers'] = walk(s['numbers']); f.write_text(json.dumps(s))
    return dst

def test_itself_is_exact(capsys):
    assert compare_main([str(FIG), str(FIG)]) == 0
    out = capsys.readouterr().out
    assert out.startswith('Claim verdicts agree (6 claims); numbers:') and 'Differing numbers: none' in out
    c = compare_figures(FIG, FIG)['counts']
    assert c['exact'] > 5000 and c['within tolerance'] == c['differs'] == c['only in A'] == c['only in B'] == 0

def test_within_tolerance(tmp_path, capsys):
    b = json_copy(tmp_path/'b', lambda k, v: v + .1 if 'psnr' in k else v * 1.02 if k == 'stable_rank' else v)
    assert compare_main([str(FIG), str(b), '--json', str(tmp_path/'r.json')]) == 0
    rep = json.loads((tmp_path/'r.json').read_text())
    moved = [e for e in rep['numbers'] if e['class'] == 'within tolerance']
    assert rep['counts']['differs'] == 0 and len(moved) > 2000
    assert {e['rule'] for e in moved} <= {'dB', 'dB, seed sd', 'dB, extreme', 'spectrum'}
    assert 'Differing numbers: none' in capsys.readouterr().out

def test_beyond_tolerance(tmp_path, capsys):
    b = json_copy(tmp_path/'b', lambda k, v: v + 3. if k == 'psnr_inr' else v * 1.5 if k == 'stable_rank' else v)
    assert compare_main([str(FIG), str(b)]) == 0  # numbers that differ are leads, not a failed reproduction
    out = capsys.readouterr().out
    hit = [l for l in out.splitlines() if l.split() and l.split()[0].endswith('/psnr_inr')]  # whatever run FIG holds: B is A + 3 dB, beyond 1 dB
    assert hit and all(l.rstrip().endswith('tol ±1 dB [dB]') for l in hit), out
    a, b_ = map(float, re.findall(r' [AB] (-?[\d.]+)', hit[0])); assert abs(b_ - a - 3) < 1e-3, hit[0]
    rep = compare_figures(FIG, b)
    bad = {e['rule'] for e in rep['numbers'] if e['class'] == 'differs'}
    assert bad == {'dB', 'spectrum'} and rep['counts']['differs'] > 2000

def test_verdict_changed(tmp_path, capsys):
    b = json_copy(tmp_path/'b'); cl = json.loads((b/'claims.json').read_text())
    cl['claims'][4]['verdict'] = 'reproduced'; (b/'claims.json').write_text(json.dumps(cl))
    assert compare_main([str(FIG), str(b)]) == 1
    out = capsys.readouterr().out
    assert out.startswith('CLAIM VERDICTS DIFFER: C5 (partially -> reproduced);') and '! C5' in out

def test_unreadable_input(tmp_path, capsys):
    b = json_copy(tmp_path/'b'); (b/'atom_gallery.json').unlink()
    assert compare_main([str(FIG), str(b)]) == 2
    assert 'atom_gallery.json: missing (manifest.json lists it)' in capsys.readouterr().err
    c = json_copy(tmp_path/'c'); (c/'regime_map.json').write_text('{"numbers": ')
    assert compare_main([str(c), str(FIG)]) == 2
    err = capsys.readouterr().err
    assert 'regime_map.json: not readable JSON' in err and str(c) in err
    assert compare_main([str(FIG), str(tmp_path/'nowhere')]) == 2 and 'no such directory' in capsys.readouterr().err
