"""Tests of `cohort_inrs.pipeline`: the job table, papermill runs, failures, the manifest, the claims report, the CLI.

Every test runs tiny fake figure notebooks (no torch import, about a second each) from a temporary
folder, with the repository root (`COHORT_INRS_ROOT`) pointed at that folder, so nothing is
written into the working tree."""
import argparse, json, logging
from pathlib import Path
import nbformat
import pytest

from cohort_inrs import pipeline
from cohort_inrs.pipeline import (Job, JOBS, CLAIMS, jobs_for, select_params, run_job, regenerate, failures, describe,
                                  write_manifest, sha256, claims_report, measure_claim)
from cohort_inrs.cli import main, add_regenerate_parser, cmd_regenerate

PARAMS = ("profile: str = 'smoke'  # settings profile\n"
          "n: int = 1  # how many bytes the figure has\n"
          "device: str = 'auto'  # device\n"
          "out_dir: str = ''  # output folder")

def figure_body(name):
    "A cell that writes `<out_dir>/<name>.png` (n bytes) and a sidecar with its parameters."
    return ("import json, pathlib\n"
            "out = pathlib.Path(out_dir or 'default_out'); out.mkdir(parents=True, exist_ok=True)\n"
            f"(out/'{name}.png').write_bytes(b'x' * n)\n"
            f"(out/'{name}.pdf').write_bytes(b'pdf')\n"
            f"(out/'{name}.json').write_text(json.dumps({{'name': '{name}', 'numbers': {{'n': n}}, 'params': "
            "{k: v for k, v in globals().items() if k in ('profile', 'n', 'device', 'cohorts', 'force')}, "
            "'device': 'cpu', 'device_name': 'fake', 'git': 'abc123', 'versions': {'x': '1'}, 'wall_time_s': 0.5}))")

def make_nb(path, params=PARAMS, body=None, tag=True):
    "Write a fake figure notebook: a parameters cell, then `body` (default: write `<stem>.{png,pdf,json}`)."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    c = nbformat.v4.new_code_cell(params)
    if tag: c.metadata['tags'] = ['parameters']
    nb = nbformat.v4.new_notebook(cells=[c, nbformat.v4.new_code_cell(body or figure_body(path.stem))])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
    nbformat.write(nb, str(path)); return path

def job(tmp, name, params_by_profile=None, **kw):
    "A job for a fake notebook `<tmp>/nbs/figures/<name>.ipynb` (created unless `make=False`)."
    make = kw.pop('make', True)
    p = tmp/'nbs'/'figures'/f'{name}.ipynb'
    if make: make_nb(p, **kw)
    return Job(name, str(p), params_by_profile or {}, (f'{name}.png', f'{name}.json'))

@pytest.fixture
def root(tmp_path, monkeypatch):
    "A fake repository root: default figures/ and runs/ resolve inside tmp_path."
    monkeypatch.setenv('COHORT_INRS_ROOT', str(tmp_path))
    return tmp_path


# ---------------------------------------------------------------- job table

def test_jobs_for_and_params():
    assert [j.name for j in jobs_for('cpu', ['cohorts', 'ablation'])] == ['cohorts', 'ablation']
    assert [j.name for j in jobs_for('cpu', 'ablation,cohorts')] == ['cohorts', 'ablation']  # table order
    assert jobs_for('smoke') == JOBS
    with pytest.raises(ValueError, match=r"Unknown job 'nope'.*cohorts"):
        jobs_for('cpu', ['nope'])
    with pytest.raises(ValueError, match='Unknown profile'):
        jobs_for('gpu')
    j = Job('a', 'x.ipynb', {'*': {'n': 1, 's': 0}, 'cpu': {'n': 2}})
    assert j.params('cpu') == {'n': 2, 's': 0} and j.params('paper') == {'n': 1, 's': 0}
    assert select_params({'a', 'c'}, {'a': 1, 'b': 2}, {'c': 3, 'd': 4}) == ({'a': 1, 'c': 3}, ['b'])


def test_real_job_table_consistent():
    "Names are unique, every claim reads a job's sidecar, and existing notebooks declare what the table passes."
    import papermill as pm
    names = [j.name for j in JOBS]
    assert len(set(names)) == len(names)
    assert JOBS[0].name == 'cohorts' and JOBS[0].params('cpu')['cohorts'] == 'mni152@48,mni152cor@48,lfw@25,digits@8'
    outs = {o for j in JOBS for o in j.outputs}
    assert {c.sidecar for c in CLAIMS} <= outs
    assert [c.id for c in CLAIMS] == ['C1', 'C2', 'C3', 'C4', 'C5', 'C6']
    for j in JOBS:
        if not j.path().exists(): continue
        declared = set(pm.inspect_notebook(str(j.path())))
        for prof in ('smoke', 'cpu', 'paper'):
            missing = (set(pipeline.COMMON_PARAMS) | set(j.params(prof))) - declared
            assert not missing, f"{j.notebook} does not declare {missing} ({prof})"


# ---------------------------------------------------------------- running

def test_regenerate_outputs_manifest_and_injection(root):
    fig = root/'figs'
    jobs = [job(root, 'alpha', {'cpu': {'n': 5}}), job(root, 'beta')]
    rs = regenerate('cpu', table=jobs, jobs=2, out_dir=fig, progress=False)
    assert [r['status'] for r in rs] == ['ok', 'ok'] and not failures(rs)
    assert (fig/'alpha.png').read_bytes() == b'x' * 5       # the table's n=5 was injected, not the default 1
    assert (fig/'beta.png').read_bytes() == b'x'            # beta keeps its default
    side = json.loads((fig/'alpha.json').read_text())
    assert side['params'] == {'profile': 'cpu', 'n': 5, 'device': 'auto'}
    assert rs[0]['params']['out_dir'] == str(fig) and rs[0]['wall_time_s'] > 0
    assert Path(rs[0]['executed']) == fig/'notebooks'/'alpha.ipynb' and Path(rs[0]['executed']).exists()  # beside its figures
    assert not (root/'runs').exists()  # an --out-dir run writes nothing into the default places
    assert not (root/'nbs'/'figures'/'default_out').exists()  # out_dir was passed, not the default

    m = json.loads((fig/'manifest.json').read_text())
    paths = sorted(o['path'] for o in m['outputs'])
    assert paths == ['alpha.json', 'alpha.pdf', 'alpha.png', 'beta.json', 'beta.pdf', 'beta.png']
    for o in m['outputs']:
        f = fig/o['path']
        assert o['sha256'] == sha256(f) and o['size'] == f.stat().st_size
        assert o['job'] == o['path'].split('.')[0]
        assert (o['git'], o['device'], o['versions'], o['wall_time_s']) == ('abc123', 'cpu', {'x': '1'}, 0.5)  # from the sidecar
    import hashlib
    assert m['outputs'][0]['sha256'] == hashlib.sha256((fig/m['outputs'][0]['path']).read_bytes()).hexdigest()
    assert m['jobs']['alpha']['params']['n'] == 5 and m['jobs']['alpha']['provenance']['source'] == 'sidecar'
    assert (fig/'claims.md').exists() and (fig/'claims.json').exists()

    # --only reruns one job; the manifest keeps the other, re-hashed (not copied from the old manifest)
    (fig/'beta.pdf').write_bytes(b'changed')
    rs = regenerate('cpu', table=jobs, only=['alpha'], out_dir=fig, progress=False)
    assert [r['name'] for r in rs] == ['alpha']
    m = json.loads((fig/'manifest.json').read_text())
    assert {o['job'] for o in m['outputs']} == {'alpha', 'beta'}
    assert next(o for o in m['outputs'] if o['path'] == 'beta.pdf')['sha256'] == sha256(fig/'beta.pdf')
    m2 = json.loads(write_manifest('cpu', [], fig, merge=False).read_text())
    assert m2['outputs'] == [] and m2['jobs'] == {}


def test_failure_does_not_stop_others(root):
    fig = root/'figs'
    jobs = [job(root, 'boom', body="x = 1\nraise ValueError('kaputt')"), job(root, 'fine')]
    rs = regenerate('smoke', table=jobs, out_dir=fig, progress=False)
    bad, ok = rs
    assert ok['status'] == 'ok' and (fig/'fine.png').exists()
    assert bad['status'] == 'failed' and not bad['ok'] and failures(rs) == [bad]
    assert (bad['error']['ename'], bad['error']['evalue'], bad['error']['exec_count']) == ('ValueError', 'kaputt', 3)
    line = describe(bad)
    assert 'nbs/figures/boom.ipynb' in line and 'In [3]' in line and 'ValueError: kaputt' in line
    assert 'see the executed notebook figs/notebooks/boom.ipynb' in line   # beside the figures, relative to the repository root
    executed = nbformat.read(bad['executed'], as_version=4)
    assert executed.metadata.papermill['exception']
    m = json.loads((fig/'manifest.json').read_text())
    assert m['jobs']['boom']['status'] == 'failed' and m['jobs']['boom']['files'] == []
    assert {o['job'] for o in m['outputs']} == {'fine'}


def test_cli_exit_code_only_and_error_output(root, monkeypatch, capsys):
    fig = root/'figs'
    table = [job(root, 'boom', body="raise RuntimeError('no GPU here')"), job(root, 'fine'), job(root, 'other')]
    monkeypatch.setattr(pipeline, 'JOBS', table)
    rc = main(['regenerate', '--profile', 'cpu', '--out-dir', str(fig), '--only', 'fine', 'boom'])
    err = capsys.readouterr().err
    assert rc == 1
    assert 'boom: FAILED in' in err and 'boom.ipynb' in err and 'RuntimeError: no GPU here' in err and 'In [3]' in err
    assert 'figs/notebooks/boom.ipynb' in err
    assert 'fine: ok in' in err and '1 ok, 1 failed, 0 skipped' in err
    assert (fig/'fine.png').exists() and not (fig/'other.png').exists()  # --only selected
    assert main(['regenerate', '--profile', 'cpu', '--out-dir', str(fig), '--only', 'fine']) == 0
    assert main(['regenerate', '--out-dir', str(fig), '--only', 'nosuch']) == 2
    assert 'Unknown job' in capsys.readouterr().err


def test_add_regenerate_parser_dispatch(root, monkeypatch):
    monkeypatch.setattr(pipeline, 'JOBS', [job(root, 'fine')])
    p = argparse.ArgumentParser(prog='cohort-inrs'); sub = p.add_subparsers(dest='command')
    add_regenerate_parser(sub)
    a = p.parse_args(['regenerate', '--profile', 'smoke', '--jobs', '1', '--device', 'cpu', '--out-dir', str(root/'f')])
    assert a.func is cmd_regenerate and (a.profile, a.device, a.executor, a.force, a.only) == ('smoke', 'cpu', 'local', False, None)
    assert a.func(a) == 0 and (root/'f'/'fine.png').exists()
    assert json.loads((root/'f'/'fine.json').read_text())['params']['device'] == 'cpu'
    with pytest.raises(SystemExit):
        p.parse_args(['regenerate', '--device', 'tpu'])


def test_cli_bad_submitit_setting_is_a_clear_error(root, monkeypatch, capsys):
    pytest.importorskip('submitit', reason='submitit not installed (pip install "cohort-inrs[slurm]")')
    monkeypatch.setattr(pipeline, 'JOBS', [job(root, 'fine')])
    rc = main(['regenerate', '--out-dir', str(root/'f'), '--executor', 'submitit', '--cluster', 'debug', '--submitit-param', 'bogus=1'])
    assert rc == 2 and "cohort-inrs regenerate: error:" in capsys.readouterr().err and 'bogus' not in ''.join(map(str, (root/'f').glob('*')))
    assert main(['regenerate', '--out-dir', str(root/'f'), '--submitit-param', 'novalue']) == 2


def test_undeclared_parameter_warns_not_crashes(root, caplog):
    params = "profile: str = 'smoke'  # profile\nn: int = 1  # bytes\nout_dir: str = ''  # folder"  # no `device`
    j = job(root, 'nodev', {'cpu': {'seed': 3}}, params=params)
    with caplog.at_level(logging.WARNING, logger='cohort_inrs.pipeline'):
        rs = regenerate('cpu', table=[j], out_dir=root/'figs', progress=False)
    r = rs[0]
    assert r['status'] == 'ok' and set(r['ignored_params']) == {'device', 'seed'}
    assert any("does not declare parameter 'seed'" in w for w in r['warnings'])
    assert "does not declare parameter 'device'" in caplog.text and "'seed'" in caplog.text
    assert 'seed' not in r['params'] and 'device' not in r['params']


def test_optional_cohorts_and_force_only_where_declared(root, caplog):
    takes = PARAMS + "\ncohorts: str = ''  # specs\nforce: bool = False  # rebuild"
    a = job(root, 'takes', {'cpu': {'cohorts': 'lfw@25'}}, params=takes)
    b = job(root, 'plain')
    with caplog.at_level(logging.WARNING, logger='cohort_inrs.pipeline'):
        rs = regenerate('cpu', table=[a, b], cohorts=' digits@8, lfw@16 ', force=True, out_dir=root/'figs', progress=False)
    assert [r['status'] for r in rs] == ['ok', 'ok']
    pa = json.loads((root/'figs'/'takes.json').read_text())['params']
    assert pa['cohorts'] == 'digits@8,lfw@16' and pa['force'] is True   # the override beats the table's cohorts
    assert 'cohorts' not in rs[1]['params'] and 'force' not in rs[1]['params'] and not rs[1]['warnings']
    assert 'does not declare' not in caplog.text
    rs = regenerate('cpu', table=[a], out_dir=root/'figs', progress=False)
    assert rs[0]['params']['cohorts'] == 'lfw@25' and rs[0]['params']['force'] is False


def test_missing_notebook_skipped_and_untagged_fails(root, monkeypatch, capsys):
    fig = root/'figs'
    later = job(root, 'later', make=False)
    untagged = job(root, 'untagged', tag=False)
    fine = job(root, 'fine')
    rs = regenerate('cpu', table=[later, untagged, fine], out_dir=fig, progress=False)
    assert [r['status'] for r in rs] == ['skipped', 'failed', 'ok']
    assert 'does not exist yet' in rs[0]['message'] and rs[0]['executed'] is None
    assert 'no cell tagged `parameters`' in rs[1]['message'] and not (fig/'untagged.png').exists()
    monkeypatch.setattr(pipeline, 'JOBS', [later, fine])
    assert main(['regenerate', '--out-dir', str(fig)]) == 0                      # a figure not written yet is no failure
    assert main(['regenerate', '--out-dir', str(fig), '--only', 'later']) == 1   # ... unless asked for by name
    assert 'later: skipped' in capsys.readouterr().err


def test_stale_or_missing_outputs_fail(root):
    fig = root/'figs'; fig.mkdir()
    (fig/'lazy.png').write_bytes(b'old'); (fig/'lazy.json').write_text('{}')
    import os, time
    old = time.time() - 3600; os.utime(fig/'lazy.png', (old, old)); os.utime(fig/'lazy.json', (old, old))
    j = job(root, 'lazy', body="print('forgot to save')")
    r = run_job(j, 'cpu', out_root=fig, runs_root=root/'runs', quiet=True)
    assert r['status'] == 'failed' and any('stale' in m for m in r['missing_outputs'])
    (fig/'lazy.png').unlink()
    r = run_job(j, 'cpu', out_root=fig, runs_root=root/'runs', quiet=True)
    assert 'lazy.png (not written)' in r['missing_outputs'] and 'lazy.png' in describe(r)


# ---------------------------------------------------------------- claims report

def _side(fig, name, numbers):
    fig.mkdir(parents=True, exist_ok=True)
    (fig/name).write_text(json.dumps({'name': name[:-5], 'numbers': numbers, 'params': {'profile': 'cpu'}, 'git': 'abc'}))

def test_claims_report_from_fake_sidecars(tmp_path):
    fig = tmp_path/'figs'
    _side(fig, 'cohort_fit.json', {'C3': {'verdict': 'reproduced', 'measured': 'SIREN 30.1 +- 0.4 dB, FFMLP 29.8 +- 0.5 dB',
                                          'values': {'siren': 30.1, 'ffmlp': 29.8}}})
    _side(fig, 'freeze_sweep.json', {'C1': {'verdict': 'not reproduced', 'measured': 'best d = 2, srank argmax = 4 | 3/4 runs', 'values': [2, 4]}})
    _side(fig, 'atom_localisation.json', {'C4': {'verdict': 'partially', 'measured': 'area 0.12', 'values': [0.12],
                                                 'parts': {'localised': 'holds', 'content_independent': 'cannot tell'}},
                                          'C5': {'verdict': 'yes!', 'measured': '?'}})
    _side(fig, 'freeze_vs_finetune.json', {'C2': {'verdict': 'cannot tell', 'measured': 'gap -1 dB',
                                                  'by_reading': {'through': 'cannot tell', 'before': 'not reproduced'}}})
    (fig/'ablation.json').write_text('{not json')
    md, d = claims_report('cpu', fig)
    v = {r['id']: r['verdict'] for r in d['claims']}
    assert v == {'C1': 'not reproduced', 'C2': 'cannot tell', 'C3': 'reproduced', 'C4': 'partially', 'C5': 'not measured', 'C6': 'not measured'}
    rows = {r['id']: r for r in d['claims']}
    assert 'needs a verdict' in rows['C5']['measured'] and "'yes!'" in rows['C5']['measured']
    assert 'not valid JSON' in rows['C6']['measured']
    assert rows['C3']['values'] == {'siren': 30.1, 'ffmlp': 29.8} and rows['C3']['git'] == 'abc'
    assert d['summary'] == {'reproduced': 1, 'partially': 1, 'not reproduced': 1, 'cannot tell': 1, 'unstable': 0, 'not measured': 2}
    assert (fig/'claims.md').read_text() == md
    assert json.loads((fig/'claims.json').read_text()) == json.loads(json.dumps(d))
    lines = md.splitlines()
    top = {l.split(' | ')[0][2:]: l for l in lines if l.startswith('| C')}  # the one-line-per-claim summary that opens the report
    assert list(top) == ['C1', 'C2', 'C3', 'C4', 'C5', 'C6'] and lines.index(top['C1']) < lines.index('## Details')
    assert '**cannot tell**' in top['C2'] and '[cohort_fit.ipynb](notebooks/cohort_fit.ipynb)' in top['C3']
    assert '| comparable (no number given) |' in top['C3'] and '| - |' in top['C3']  # these sidecars carry no deciding number's fields
    sec = lambda cid: md[md.index(f'### {cid}:'):].split('\n### ')[0]  # the claim's details section
    assert 'localised: holds; content_independent: cannot tell' in sec('C4')  # each part's control status, beside the verdict
    assert 'rule read `through`: cannot tell, `before`: not reproduced' in sec('C2') and sec('C2').startswith('### C2: cannot tell')
    assert '> SIREN and FFMLP reach comparable cohort-fitting quality.' in sec('C3') and '- SIREN 30.1 +- 0.4 dB, FFMLP 29.8 +- 0.5 dB' in sec('C3')
    assert '`cohort_fit`' in sec('C3') and '- best d = 2, srank argmax = 4 | 3/4 runs' in sec('C1')  # a `|` is safe outside tables
    assert 'figure ablation' not in md and 'not valid JSON' in sec('C6')
    assert measure_claim(CLAIMS[1], tmp_path/'empty')['measured'] == 'not measured (figure freeze_vs_finetune not generated)'
    assert measure_claim(CLAIMS[0], tmp_path/'empty')['verdict'] == 'not measured'


def test_claims_report_numbers_only_from_sidecars(tmp_path):
    "Change a sidecar's number and the report follows: nothing is typed in."
    fig = tmp_path/'figs'
    for val in ('4.2 dB', '7.7 dB'):
        _side(fig, 'ablation.json', {'C6': {'verdict': 'partially', 'measured': f'max FFMLP drop {val}', 'values': {'max_drop_db': float(val[:3])}}})
        md, d = claims_report('smoke', fig)
        assert f'max FFMLP drop {val}' in md and d['claims'][5]['values']['max_drop_db'] == float(val[:3])


# ---------------------------------------------------------------- submitit

@pytest.mark.parametrize('cluster', ['local', 'debug'])
def test_submitit_executor_same_outputs(root, cluster):
    "submitit's `local` (subprocesses, as on SLURM) and `debug` (in-process) clusters give what the local pool gives."
    pytest.importorskip('submitit', reason='submitit not installed (pip install "cohort-inrs[slurm]")')
    alpha = job(root, 'alpha', {'cpu': {'n': 4}})
    jobs = [alpha] if cluster == 'local' else [alpha, job(root, 'boom', body="raise KeyError('k')")]  # keep the slow one short
    rs = regenerate('cpu', table=jobs, out_dir=root/'sub', executor='submitit', cluster=cluster, progress=False)
    ref = regenerate('cpu', table=[alpha], out_dir=root/'ref', progress=False, report=False)
    assert rs[0]['status'] == 'ok' and (root/'sub'/'alpha.png').read_bytes() == b'x' * 4
    assert sha256(root/'sub'/'alpha.png') == sha256(root/'ref'/'alpha.png')
    assert json.loads((root/'sub'/'alpha.json').read_text())['params'] == json.loads((root/'ref'/'alpha.json').read_text())['params']
    assert ref[0]['params'] == rs[0]['params'] | {'out_dir': str(root/'ref')}
    assert (root/'runs'/'cpu'/'submitit').is_dir()
    m = json.loads((root/'sub'/'manifest.json').read_text())
    assert {o['path'] for o in m['outputs']} == {'alpha.png', 'alpha.pdf', 'alpha.json'}
    if cluster == 'debug':
        assert rs[1]['status'] == 'failed' and rs[1]['error']['ename'] == 'KeyError' and 'boom.ipynb' in describe(rs[1])


def test_set_overrides_reach_notebooks_and_bad_fields_fail_early(root, capsys):
    "`regenerate --set` passes one `overrides` string to notebooks declaring it; an unknown field fails before any notebook runs."
    takes = PARAMS + "\noverrides: str = ''  # config overrides"
    body = ("import json, pathlib\nfrom cohort_inrs.config import get_config, parse_overrides\n"
            "out = pathlib.Path(out_dir); out.mkdir(parents=True, exist_ok=True)\n"
            "cfg = get_config(profile, **parse_overrides(overrides))\n"
            "(out/'ov.png').write_bytes(b'x')\n"
            "(out/'ov.json').write_text(json.dumps({'steps': cfg.train.steps, 'channels': cfg.data.channels, 'overrides': overrides}))")
    a = job(root, 'ov', params=takes, body=body)
    rs = regenerate('smoke', table=[a], sets=['train.steps=7', 'data.channels=3'], out_dir=root/'figs', progress=False, report=False)
    assert rs[0]['status'] == 'ok', rs[0]['message']
    side = json.loads((root/'figs'/'ov.json').read_text())
    assert (side['steps'], side['channels']) == (7, 3) and side['overrides'] == 'train.steps=7;data.channels=3'
    with pytest.raises(ValueError, match='stepz'):
        regenerate('smoke', table=[a], sets=['train.stepz=7'], out_dir=root/'figs2', progress=False)
    assert not (root/'figs2'/'ov.json').exists()
    p = argparse.ArgumentParser(); sub = p.add_subparsers(); add_regenerate_parser(sub)
    args = p.parse_args(['regenerate', '--profile', 'smoke', '--set', 'train.stepz=7', '--out-dir', str(root/'figs3')])
    assert args.func(args) == 2 and 'stepz' in capsys.readouterr().err


def test_every_figure_notebook_takes_overrides_and_records_the_config():
    "`regenerate --set` reaches every figure notebook, and every sidecar records the whole config."
    import papermill as pm
    for j in JOBS:
        assert 'overrides' in pm.inspect_notebook(str(j.path())), j.notebook
        src = j.path().read_text()
        # through `plots.figure_setup` (it applies the overrides; `FigureRun.finish` writes the config into the sidecar)
        assert 'figure_setup(' in src and 'overrides=overrides' in src and '.finish(' in src, j.notebook
