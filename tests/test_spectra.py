"Tests of `cohort_inrs.spectra`: known-value spectra, the random-matrix scale, the stable-rank freeze rule and the `freeze-depth` command."
import argparse, json
import pytest
import torch

from cohort_inrs.models import CohortINR, save_inr
from cohort_inrs.spectra import (stable_rank, effective_rank, spectral_norm, frobenius_norm, layer_spectra,
                                 recommend_freeze_depth, alternative_depths, format_spectra_table,
                                 freeze_depth_report)
from cohort_inrs.cli import add_freeze_depth_parser, cmd_freeze_depth


def with_srank(out, inp, k, scale=1., seed=0):
    "An (out, inp) matrix with k equal non-zero singular values `scale`: stable rank k."
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(out, out, generator=g, dtype=torch.float64))[0][:, :k]
    V = torch.linalg.qr(torch.randn(inp, inp, generator=g, dtype=torch.float64))[0][:, :k]
    return (scale * U @ V.T).float()


def parser():
    p = argparse.ArgumentParser(prog='cohort-inrs')
    add_freeze_depth_parser(p.add_subparsers(dest='command'))
    return p


@pytest.mark.parametrize('n', [1, 3, 16])
def test_identity(n):
    assert stable_rank(torch.eye(n)).item() == pytest.approx(n)
    assert effective_rank(torch.eye(n)).item() == pytest.approx(n)


def test_rank_one():
    W = torch.randn(7, 1) @ torch.randn(1, 5)
    assert stable_rank(W).item() == pytest.approx(1, abs=1e-9)
    assert effective_rank(W).item() == pytest.approx(1, abs=1e-5)


def test_diag_values():
    D = torch.diag(torch.tensor([3., 4.]))
    assert stable_rank(D).item() == pytest.approx(1.5625)
    assert spectral_norm(D).item() == pytest.approx(4) and frobenius_norm(D).item() == pytest.approx(5)
    assert effective_rank(torch.diag(torch.tensor([1., 1., 0.]))).item() == pytest.approx(2)


def test_batched_and_zero():
    Ws = torch.stack([torch.eye(3), torch.diag(torch.tensor([3., 4., 0.])), torch.zeros(3, 3)])
    assert stable_rank(Ws).tolist() == pytest.approx([3, 1.5625, 0])
    assert effective_rank(Ws).shape == (3,) and effective_rank(Ws)[2].item() == 0


def test_gaussian_marchenko_pastur():
    "An n x n Gaussian matrix has stable rank about n/4 (||W||_F^2 ~ n^2 s^2, ||W||_2 ~ 2 sqrt(n) s)."
    g = torch.Generator().manual_seed(1)
    sr = stable_rank(0.3 * torch.randn(256, 256, generator=g)).item()
    assert abs(sr / 64 - 1) < 0.15, sr


def test_layer_spectra_siren_layer1_bounded():
    t = layer_spectra(CohortINR('siren', 2, width=16, n_shared=3))
    assert [r['layer'] for r in t] == [1, 2, 3] and t[0]['shape'] == (16, 2)
    assert t[0]['stable_rank'] <= 2 + 1e-9 and t[0]['effective_rank'] <= 2 + 1e-9
    assert len(t[1]['singular_values']) == 16 and t[1]['stable_rank_fraction'] == pytest.approx(t[1]['stable_rank'] / 16)


@pytest.mark.parametrize('backbone', ['siren', 'ffmlp'])
def test_recommend_freeze_depth_on_built_model(backbone):
    net = CohortINR(backbone, 3, width=16, n_shared=5, ff_m=8, ff_sigma=1.)
    ranks = [2, 4, 6, 11, 3]  # layer 4 has the highest stable rank; layer 1 the largest spectral norm
    with torch.no_grad():
        for l, k in enumerate(ranks):
            W = net.enc_w[l]
            net.enc_w[l].copy_(with_srank(*W.shape, k, scale=5. if l == 0 else 1., seed=l))
    d, table = recommend_freeze_depth(net)
    assert d == 4
    assert [r['stable_rank'] for r in table] == pytest.approx(ranks, rel=1e-5)
    alt = alternative_depths(table)
    assert alt['stable_rank'] == 4 and alt['spectral_norm'] == 1 and alt['effective_rank'] == 4
    s = format_spectra_table(table, d)
    assert sum('<- d*' in l for l in s.splitlines()) == 1 and s.splitlines()[2 + 3].endswith('<- d*')


def test_tie_goes_to_shallower_layer():
    assert recommend_freeze_depth([torch.eye(4), torch.eye(4), torch.eye(2)])[0] == 1


def test_freeze_depth_cli(tmp_path, capsys):
    net = CohortINR('ffmlp', 2, width=8, n_shared=4, ff_m=4, ff_sigma=1.)
    with torch.no_grad():
        for l, k in enumerate([3, 5, 2, 1]): net.enc_w[l].copy_(with_srank(8, 8, k, seed=l))
    path = save_inr(net, tmp_path/'cohort.safetensors')
    args = parser().parse_args(['freeze-depth', str(path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert 'd* = 2' in out and 'freeze layers 1..2' in out
    args = parser().parse_args(['freeze-depth', str(path), '--json'])
    assert args.func(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep['d_star'] == 2 and rep['backbone'] == 'ffmlp' and len(rep['layers']) == 4
    assert rep['layers'][1]['stable_rank'] == pytest.approx(5, rel=1e-5)


def test_missing_file_is_a_clear_error(tmp_path):
    args = parser().parse_args(['freeze-depth', str(tmp_path/'missing.safetensors')])
    with pytest.raises(FileNotFoundError, match='missing.safetensors.*save_inr'):
        cmd_freeze_depth(args)


def test_corrupt_or_wrong_file_is_a_clear_error(tmp_path):
    bad = tmp_path/'bad.safetensors'; bad.write_bytes(b'garbage')
    with pytest.raises(ValueError, match='bad.safetensors'):
        freeze_depth_report(bad)
    with pytest.raises(ValueError, match='directory'):
        freeze_depth_report(tmp_path)
    from cohort_inrs.store import save_tensors
    other = save_tensors(tmp_path/'other.safetensors', {'x': torch.zeros(2)}, {})
    with pytest.raises(ValueError, match='not a cohort_inr file'):
        freeze_depth_report(other)
