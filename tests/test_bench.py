"Tests of `cohort_inrs.bench`'s operating-point entry at tiny sizes: well-formed rows, the table, the JSON, the peer's equivalence. Never timings."
import json
import pytest, torch
from cohort_inrs.bench import (spawn_group, fp32_matmuls, interleaved_times, matmul_flops, matmul_seconds, outside_share, op_shape, op_data, op_row,
                               bench_op_cohort, bench_op_fit, bench_op_batched, bench_op_peer, peer_available, peer_siren, fit_peer,
                               format_table, OP_COLUMNS, run_bench)
from cohort_inrs.cli import main
from cohort_inrs.data import coord_grid
from cohort_inrs.fit import fit_stack
from cohort_inrs.models import CohortINR, StackedINR

TINY = op_shape('smoke', real=False)
needs_peer = pytest.mark.skipif(not peer_available(), reason='siren-pytorch not installed (pip install cohort-inrs[peer])')

def check_row(r):
    assert r['entry'] == 'op' and r['ours_ms'] > 0 and r['shape'] == TINY['label'] and r['device'] == 'cpu'
    for k in ('util', 'outside_mm'):
        assert r[k] is None or (r[k] >= 0 and (k != 'outside_mm' or r[k] <= 1)), (k, r)
    if r['other_ms'] is not None: assert r['ratio'] == pytest.approx(r['other_ms'] / r['ours_ms'])
    assert json.loads(json.dumps(r)) == r

def test_operating_point_shapes_follow_the_profiles():
    cpu, paper = op_shape('cpu'), op_shape('paper')
    assert (cpu['width'], cpu['resolution'], cpu['channels'], cpu['n_signals'], cpu['L'], cpu['n_images'], cpu['n_seeds']) == (64, 48, 3, 10, 5, 6, 1)
    assert (paper['width'], paper['resolution'], paper['channels']) == (256, 176, 3) and paper['label'] == 'paper 176x176x3 w256'
    assert 'of 176x176' in op_shape('paper', resolution=64)['label']  # a scaled shape says so

def test_op_data_random_shapes():
    x, tr, te = op_data(TINY)
    assert x.shape == (64, 2) and tr.shape == (TINY['n_signals'], 64, 1) and te.shape == (TINY['n_images'], 64, 1)

def test_fp32_matmuls_restores_flags():
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        with fp32_matmuls('cuda'): assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32
    finally: torch.backends.cuda.matmul.allow_tf32 = old

def test_measuring_helpers():
    a = torch.randn(32, 32)
    assert matmul_flops(lambda: a @ a) == 2 * 32 ** 3
    assert matmul_seconds(lambda: torch.sin(a)) == 0 and matmul_seconds(lambda: a @ a) > 0
    assert set(interleaved_times({'x': lambda: None, 'y': (lambda: None, 2)}, 2)) == {'x', 'y'}
    assert outside_share(3., 1.) == 0 and outside_share(0., 1.) == 1

def test_rows_and_table():
    rows = [op_row(TINY, 'a', 2., 2.8, 20., 20.1, 0.5, 0.3, target=1.5), op_row(TINY, 'b', 1.)]
    assert rows[0]['meets'] is False and rows[1]['ratio'] is None
    lines = format_table(rows).splitlines()
    assert len(lines) == 5 and all(c in lines[0] for c in OP_COLUMNS) and '1.40x' in lines[2] and 'not met' in lines[2]
    assert lines[-1].startswith('device cpu')  # the caption

def test_cohort_fit_and_batched_rows_tiny():
    rows = (bench_op_cohort(TINY, 'ffmlp', rounds=1, compile=False, device='cpu') + bench_op_fit(TINY, 'siren', 2, 1, False, 'cpu')
            + bench_op_batched(TINY, 'siren', 2, 1, 'cpu'))
    for r in rows: check_row(r)
    assert [r['target'] for r in rows] == [None, None, 3., None] and rows[0]['util'] > 0 and rows[1]['util'] > 0

def test_batched_rows_compiled_and_the_matmul_bound():
    rows = bench_op_batched(TINY, 'siren', 2, 1, 'cpu', compile=True)
    for r in rows: check_row(r)
    assert [r['target'] for r in rows] == [3., 3., None] and 'compiled' in rows[1]['what']
    assert rows[0]['other_ms'] == rows[1]['other_ms']  # both against the same timed loop
    bound = float(rows[0]['note'].split('at most ')[1].rstrip('x'))
    assert bound > 0  # the loop's time over the DepthStack's matmul time at the measured peak

@needs_peer
def test_peer_is_the_same_network():
    st = StackedINR.from_cohort(CohortINR('siren', 1, 3, 16, 3), 0, 'scratch', [0], out_channels=3); x = coord_grid(8)
    peer = peer_siren(st)
    with torch.no_grad(): assert torch.allclose(peer(x), st(x)[0], atol=1e-5)
    img = torch.rand(64, 3, generator=torch.Generator().manual_seed(1))
    p = float(fit_peer(peer, x, img, 4, 1e-3)); r = fit_stack(st, x, img[None], 4, 1e-3, log_every=2)
    assert p == pytest.approx(float(-10 * torch.log10(r['mse'][-1, 0])), abs=1e-3)  # same steps from the same weights, same PSNR

@needs_peer
def test_peer_rows_tiny():
    rows = bench_op_peer(TINY, steps=3, rounds=1, compile=False, device='cpu')
    assert len(rows) == 1; check_row(rows[0])
    assert rows[0]['target'] == 1.5 and rows[0]['psnr_ours'] == pytest.approx(rows[0]['psnr_other'], abs=1e-3)

def test_cli_bench_op_quick_writes_json(tmp_path, capsys):
    out = tmp_path/'bench.json'
    assert main(['bench', '--quick', '--no-compile', '--threads', '1', '--only', 'op', '--json', str(out)]) == 0
    cap = capsys.readouterr(); lines = cap.out.strip().splitlines()
    rows = json.loads(out.read_text())
    measured = [l.removeprefix('bench op: ') for l in cap.err.splitlines() if l.startswith('bench op: |')]
    assert len(measured) == len(rows) and all(r['what'] in l for r, l in zip(rows, measured))  # each row on stderr as it is measured
    assert lines[0].startswith('| shape') and len(lines) == len(rows) + 3 and all(r['entry'] == 'op' and r['threads'] == 1 for r in rows)
    assert '1 CPU thread' in lines[-1]
    assert not any('compiled' in r['what'] for r in rows)

def test_spawn_group_keeps_a_result_written_before_a_crash(tmp_path):
    "A process that dies after rank 0 wrote its result (a teardown abort) warns and keeps it; one that dies before raises."
    import torch.multiprocessing as mp
    from spawned_workers import write_then_abort
    out = tmp_path/'done.json'
    with pytest.warns(UserWarning, match='died after the work was written'): spawn_group(write_then_abort, (str(out), True), 1, out)
    assert json.loads(out.read_text()) == {'step_s': 1.0}
    with pytest.raises(mp.ProcessExitedException, match='SIGABRT'): spawn_group(write_then_abort, (str(tmp_path/'never.json'), False), 1, tmp_path/'never.json')
