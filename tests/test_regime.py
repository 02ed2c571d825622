"The regime map's worker processes: the same cells as in one process, and a clear error where they cannot start."
import json, subprocess, sys, textwrap
from cohort_inrs.config import get_config
from cohort_inrs.regime import regime_map


def test_workers_give_the_cells_of_one_process_bit_for_bit(tmp_path, monkeypatch):
    "Cells of two backbones fitted in one pool of two spawned workers equal the cells fitted here, in the same order (each run from an empty cache)."
    cfg, bbs = get_config('smoke'), ('ffmlp', 'siren')
    pooled = regime_map(cfg, bbs, 'digits@8', widths=(16, 24), resolutions=(6,), progress=False, workers=2)
    monkeypatch.setenv('COHORT_INRS_CACHE', str(tmp_path/'second_cache'))  # cohort INRs and sweeps trained again, here
    here = regime_map(cfg, bbs, 'digits@8', widths=(16, 24), resolutions=(6,), progress=False)
    assert len(list((tmp_path/'second_cache').rglob('*.safetensors'))) == 8  # four cohort INRs and four sweeps, trained here
    assert [(c['backbone'], c['width'], c['resolution']) for c in pooled] == [(b, w, 6) for b in bbs for w in (16, 24)]
    assert json.dumps(pooled) == json.dumps(here)  # every float, bit for bit


def test_workers_from_an_unguarded_script_fail_with_a_clear_error(tmp_path):
    "Spawned workers re-import a script's main module: without the `__main__` guard the call says what to do."
    script = tmp_path/'unguarded.py'
    script.write_text(textwrap.dedent("""
        from cohort_inrs.config import get_config
        from cohort_inrs.regime import regime_map
        regime_map(get_config('smoke'), 'ffmlp', 'digits@8', widths=(16, 24), resolutions=(6,), progress=False, workers=2)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "RuntimeError: parallel_map(regime_cell): a worker process died or could not start" in r.stderr
    assert "if __name__ == '__main__':" in r.stderr
