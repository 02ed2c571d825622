"Tests of `cohort_inrs.freeze_rules`: each rule on planted weights or features, the registry's errors, and the scoring (regret, FLOPs, compute-matched regret) on hand-computed numbers."
import math
import pytest
import torch

from cohort_inrs.data import coord_grid
from cohort_inrs.models import CohortINR, StackedINR, save_inr, plain_ops, fit_seed
from cohort_inrs.spectra import recommend_freeze_depth, effective_rank
from cohort_inrs.freeze_rules import (
    pick_layer, rule_stable_rank, untrained_like, weight_movement, rule_stable_rank_untrained, rule_random_depth,
    power_law_alpha, rule_alpha_hat, layer_activations, rule_rankme, ridge_probe_mse, rule_linear_probe, as_image,
    start_model, relative_grad_norms, rgn_depth, rule_relative_grad_norm, layer_ntk, ntk_loss_curve,
    rule_ntk_predicted_loss, read_at, probe_fits, rule_successive_halving, RULES, IMAGE_RULES, recommend_freeze_depth_by,
    sweep_curves, sweep_psnr_by_depth, rule_regret, expected_random_regret, step_flops, gain_over_finetune,
    compute_matched_regret, apply_rules, freeze_depth_by_rule_report)

DIAGS = [torch.diag(torch.tensor([2., 1., 1., 1.])), torch.eye(4), torch.diag(torch.tensor([1., 1., 1., 0.]))]  # srank 7/4, 4, 3
STEPS = torch.tensor([0, 5, 10, 15, 20])
CURVES = torch.tensor([[10., 12, 14, 16, 18], [10, 15, 16, 17, 17.5], [10, 13, 17, 18, 19], [10, 11, 12, 13, 14]])
P3 = torch.tensor([[[20., 22.], [30., 30.]], [[24., 24.], [28., 26.]], [[22., 24.], [31., 29.]]])  # (depth, image, seed)


def test_every_rule_has_the_common_result():
    net = CohortINR('ffmlp', 2, 1, width=8, n_shared=3, ff_m=4, ff_sigma=2., seed=1)
    img = torch.rand(1, 36, 1, generator=torch.Generator().manual_seed(0))
    out = apply_rules(net, img, coord_grid(6), steps=3, rgn_steps=2, budget=2, n_pixels=16, lr=1e-3)  # each rule gets the keywords it takes
    assert list(out) == list(RULES)
    for name, o in out.items():
        r = o['results'][0]
        assert r['name'] == name and 0 <= r['depth'] <= 3 and len(r['scores']) == 3 and r['better'] in ('max', 'min'), r
    assert recommend_freeze_depth_by(net, 'successive_halving', img[0], coord_grid(6), budget=2)['cost'] == 12


def test_stable_rank_planted_and_same_as_spectra():
    r = rule_stable_rank(DIAGS)
    assert r['depth'] == 2 and r['scores'] == pytest.approx([1.75, 4, 3]) and r['margin'] == pytest.approx(0.25)
    assert rule_stable_rank(DIAGS, reading='before')['depth'] == 1
    net = CohortINR('siren', 2, width=16, n_shared=4, seed=9)
    assert rule_stable_rank(net)['depth'] == recommend_freeze_depth(net)[0]


def test_pick_layer_ties_and_nan():
    assert pick_layer([3., 3., 1.]) == 1 and pick_layer([float('nan'), 2., 1.], 'min') == 3


def test_untrained_like_is_the_init_bit_for_bit():
    net = CohortINR('ffmlp', 3, 1, width=16, n_shared=3, ff_m=8, ff_sigma=2., seed=11)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad(): net.enc_w[2].mul_(2.)  # "training" moves layer 3 by 100 %
    net0 = untrained_like(net)
    assert all(torch.equal(init[k], v) for k, v in net0.state_dict().items())
    assert weight_movement(net, net0).tolist() == pytest.approx([0, 0, 1])
    assert weight_movement(net0, net0).tolist() == [0, 0, 0]
    r = rule_stable_rank_untrained(net)
    assert r['init_seed'] == 11 and r['depth'] == rule_stable_rank(net0)['depth'] and r['movement'] == pytest.approx([0, 0, 1])


def test_random_depth_seeded_and_uniform():
    d = torch.tensor([rule_random_depth(DIAGS, seed=s)['depth'] for s in range(800)])
    assert rule_random_depth(DIAGS, seed=3) == rule_random_depth(DIAGS, seed=3)
    assert (d.bincount(minlength=4) - 200).abs().max() < 50


def test_power_law_alpha_recovers_planted_exponent():
    q = (torch.arange(500, dtype=torch.float64) + 0.5) / 500
    for a in (2.5, 4.):
        alpha, xmin, k, ks = power_law_alpha((1 - q) ** (-1 / (a - 1)))
        assert abs(alpha.item() - a) < 0.2, (a, alpha)
    assert torch.isnan(power_law_alpha(torch.tensor([3., 2., 1.]))[0])  # fewer than kmin values
    assert math.isnan(rule_alpha_hat(CohortINR('siren', 1, width=16, n_shared=2))['scores'][0])  # SIREN layer 1: 2 eigenvalues


def test_rankme_of_identity_like_features_is_their_rank():
    f = torch.zeros(2, 30, 6); f[0, :4, :4] = torch.eye(4); f[1, :6, :6] = 3 * torch.eye(6)
    assert effective_rank(f).tolist() == pytest.approx([4, 6])
    net = CohortINR('siren', 1, width=16, n_shared=3, seed=0)
    xy = coord_grid(10)
    r = rule_rankme(net, coords=xy)
    assert r['scores'] == pytest.approx(effective_rank(layer_activations(net, xy)).tolist())
    assert rule_rankme(net, torch.rand(10, 10))['scores'] == r['scores']


def test_linear_probe_prefers_the_layer_that_holds_the_image():
    xy = coord_grid(20)
    net = CohortINR('ffmlp', 1, width=16, n_shared=3, ff_m=8, ff_sigma=2., seed=2)
    u = layer_activations(net, xy)[2, :, 5]
    r = rule_linear_probe(net, ((u - u.min()) / (u.max() - u.min()))[:, None], xy)
    assert r['depth'] == 3 and r['scores'][2] < 1e-3 < min(r['scores'][:2]), r['scores']
    y = torch.rand(100, 2); feats = torch.randn(2, 100, 6); feats[0, :, :2] = y
    assert ridge_probe_mse(feats, y, torch.arange(100) % 2 == 0).argmin() == 0


def test_as_image_shapes_and_errors():
    x, c = as_image(torch.rand(4, 5))
    assert x.shape == (20, 1) and torch.equal(c, coord_grid(4, 5))
    with pytest.raises(ValueError, match='with coords'): as_image(torch.rand(20, 3))


def test_relative_grad_norm_convention_and_start():
    assert rgn_depth([0.1, 0.4, 1.0]) == 2 and rgn_depth([0.6, 0.1, 1.0]) == 0 and rgn_depth([0.9, 1.0], 0.5) == 0
    net = CohortINR('siren', 2, 1, width=8, n_shared=3, seed=4); xy = coord_grid(6)
    m = start_model(net, 0, 'finetune', seed=1)
    assert torch.allclose(m(xy)[0], StackedINR.from_cohort(net, 0, 'finetune', [1])(xy)[0], atol=1e-6) and m.seed == fit_seed(1)
    img = torch.rand(36, 1, generator=torch.Generator().manual_seed(0))
    rgn = relative_grad_norms(net, img, xy, steps=2, lr=1e-3)
    r = rule_relative_grad_norm(net, img, xy, rgn_steps=2, lr=1e-3, threshold=0.3)
    assert r['scores'] == pytest.approx(rgn.tolist()) and r['depth'] == rgn_depth(rgn, 0.3)


@pytest.mark.parametrize('bb', ['siren', 'ffmlp'])
def test_layer_ntk_equals_jacobian_gram(bb):
    net = CohortINR(bb, 1, 2, width=6, n_shared=2, ff_m=3, ff_sigma=2., seed=5); xy = coord_grid(4)
    K, f = layer_ntk(net, xy)
    params = {k: v.detach() for k, v in net.named_parameters()}
    with plain_ops(): J = torch.func.jacrev(lambda p: torch.func.functional_call(net, p, (xy,)).flatten())(params)
    groups = [['enc_w.0', 'enc_b.0'], ['enc_w.1', 'enc_b.1'], ['head_w', 'head_b']]
    for g, k in zip(groups, K):
        j = torch.cat([J[n].flatten(1) for n in g], 1).double()
        assert torch.allclose(k, j @ j.T, atol=1e-6 * k.abs().max().item())
    assert torch.allclose(f, net(xy).flatten().double(), atol=1e-6)


def test_ntk_loss_curve_by_hand():
    loss, eta = ntk_loss_curve(torch.diag(torch.tensor([2., 1.])), torch.ones(2), [0, 1])
    assert eta == pytest.approx(0.5) and loss.tolist() == pytest.approx([1, 0.125])
    r = rule_ntk_predicted_loss(CohortINR('ffmlp', 2, 1, width=8, n_shared=3, ff_m=4, ff_sigma=2.), torch.rand(6, 6), steps=20,
                                n_pixels=20, mode='transfer')
    assert r['n_pixels'] == 20 and len(r['depth_scores']) == 4 and r['depth'] == max(range(4), key=lambda d: (r['depth_scores'][d], -d))


def test_probe_fits_by_hand():
    p = probe_fits(CURVES, STEPS, 5)
    assert (p['depth'], p['cost'], p['wasted'], p['rounds']) == (2, 30, 20, [(5, 4), (10, 2)])
    assert probe_fits(torch.stack([CURVES, CURVES.flip(0)], -1), STEPS, 5)['depth'].tolist() == [2, 1]
    assert probe_fits(torch.zeros(6, 5), STEPS, 5)['cost'] == 65
    with pytest.raises(ValueError, match='lower budget'): probe_fits(CURVES, STEPS, 20)
    assert read_at(CURVES, STEPS, 9).tolist() == [12, 15, 13, 11]


def test_successive_halving_rule_costs():
    r = rule_successive_halving(CohortINR('ffmlp', 2, 1, width=8, n_shared=3, ff_m=4, ff_sigma=2.), torch.rand(6, 6), budget=2, lr=1e-3)
    assert r['cost'] == 4 * 2 + 2 * 2 and r['wasted'] == 8 and r['probe_steps'] == [0, 2, 4]


def test_registry_errors():
    net = CohortINR('siren', 1, width=8, n_shared=2)
    with pytest.raises(ValueError, match="choose one of"): recommend_freeze_depth_by(net, 'nope')
    for name in IMAGE_RULES:
        with pytest.raises(ValueError, match="needs `image`"): recommend_freeze_depth_by(net, name)
    with pytest.raises(ValueError, match='pass coords'): recommend_freeze_depth_by(net, 'rankme')
    with pytest.raises(TypeError, match='needs a CohortINR'): recommend_freeze_depth_by(DIAGS, 'linear_probe', torch.rand(4, 4))


def test_sweep_readout_helpers():
    configs = ['scratch@0', 'finetune@0', 'reinit@1', 'transfer@1', 'transfer@2']
    psnr = torch.tensor([[20., 30.], [22., 31.], [21., 33.], [22., 32.], [19., 25.]])[:, :, None, None].expand(5, 2, 3, 1)
    sw = {'step': torch.tensor([0, 10]), 'configs': configs, 'depths': [0, 0, 1, 1, 2], 'psnr': psnr}
    assert sweep_curves(sw).shape == (3, 2, 3, 1)
    assert sweep_psnr_by_depth(sw)[:, 0, 0].tolist() == [31, 33, 25]
    assert sweep_psnr_by_depth(sw, 'transfer', 'scratch')[:, 0, 0].tolist() == [30, 32, 25]
    assert sweep_psnr_by_depth(sw, window=10)[:, 0, 0].tolist() == [22, 21, 19]


def test_regret_by_hand():
    r = rule_regret(P3, [2, 1])
    assert [r[k] for k in ('mean', 'median', 'p90', 'max', 'hit_rate')] == pytest.approx([2, 2, 2.8, 3, 0])
    assert rule_regret(P3, 0)['regret'] == [3, 0]
    e = expected_random_regret(P3)
    assert e['mean'] == pytest.approx(7 / 6) and e['mean'] == pytest.approx(sum(rule_regret(P3, d)['mean'] for d in range(3)) / 3)


def test_flops_gain_and_compute_matched_by_hand():
    net = CohortINR('siren', 1, 1, width=4, n_shared=2)
    assert step_flops(net).tolist() == [152, 104, 64] and step_flops(net, 10, cache_prefix=True).tolist() == [1520, 880, 160]
    c = CURVES[:, :, None, None]
    g = gain_over_finetune(c, STEPS, 2, torch.tensor([2., 1.5, 1., 0.5]))
    assert g['equal_steps'] == [1] and g['equal_flops'] == [5] and g['finetune_steps_at_equal_flops'] == [10]
    assert compute_matched_regret(c, STEPS, 2, 10)['regret'] == [2] and compute_matched_regret(c, STEPS, 2, 3)['read_step'] == [17]


def test_apply_rules_and_report(tmp_path):
    net = CohortINR('siren', 2, 1, width=8, n_shared=3, seed=3)
    imgs = torch.rand(2, 36, 1, generator=torch.Generator().manual_seed(0))
    out = apply_rules(net, imgs, coord_grid(6), rules=['stable_rank', 'random_depth', 'linear_probe'])
    assert out['stable_rank']['depth'] == [recommend_freeze_depth(net)[0]] * 2
    assert out['random_depth']['depth'] == [rule_random_depth(net, seed=s)['depth'] for s in (0, 1)]
    save_inr(net, tmp_path/'c.safetensors')
    txt = freeze_depth_by_rule_report(tmp_path/'c.safetensors', 'linear_probe', imgs[0], coord_grid(6))
    assert 'rule linear_probe' in txt and txt.count('<- freeze') == (1 if out['linear_probe']['depth'][0] else 0)
    with pytest.raises(FileNotFoundError, match='missing.safetensors'): freeze_depth_by_rule_report(tmp_path/'missing.safetensors')
