"Tests of `cohort_inrs.atoms`: firing maps, localisation measures, dictionary matching, contour tracing, the exact ablation scan, its cache and benchmark, and where an ablation changes the image (change maps, their extent, matching by drop)."
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from cohort_inrs.config import get_config
from cohort_inrs.data import coord_grid
from cohort_inrs.models import CohortINR
from cohort_inrs.sae import SAE, sae_model, sae_reconstruct, spliced_psnr, spliced_input
from cohort_inrs.atoms import (firing_pairs, maps_from_pairs, firing_maps, components, localisation, atom_localisation,
                               summarise, match_dictionaries, edge_maps, contour_correlation, contour_tracing,
                               ablate_atoms, brute_force_ablation, ablation_scan, ablation_key,
                               change_maps, change_extent, inside_share, match_by_drop)
from cohort_inrs.claim_tests import controlled, lower_test, planted_maps
from cohort_inrs.bench import bench_ablation  # the scan's benchmark lives with the other benchmarks


def small(backbone='siren', n_signals=3, C=1, width=32, n_atoms=32, k=4, seed=0, dtype=torch.float64):
    net = CohortINR(backbone, n_signals, C, width=width, n_shared=3, ff_m=16, ff_sigma=3., seed=seed).to(dtype)
    return net, SAE(width, n_atoms, k, seed=seed + 1).to(dtype)


# ---------------------------------------------------------------- firing maps

def test_firing_maps_equal_dense_codes_any_resolution_and_chunk():
    net, sae = small(dtype=torch.float32)
    for H, W in ((10, 10), (7, 13)):
        with torch.no_grad(): z = sae.encode(net.encode(coord_grid(H, W), 2))
        M = firing_maps(sae, net, 2, (H, W), chunk=17)
        assert M.shape == (32, H, W)
        torch.testing.assert_close(M.flatten(1).T, z, atol=1e-5, rtol=0)  # chunking changes only rounding
    M = firing_maps(sae, net, 2, 10)
    assert torch.equal(firing_maps(sae, net, 2, 10, atoms=[3, 1, 3]), M[[3, 1, 3]])  # same chunk: bit-equal
    fp = firing_pairs(sae, net, 2, 10)
    assert (fp['value'] > 0).all() and len(fp['value']) <= 100 * sae.k
    assert (fp['pixel'][1:] >= fp['pixel'][:-1]).all()  # sorted by pixel
    assert torch.equal(maps_from_pairs(fp), M)


# ---------------------------------------------------------------- localisation

def synthetic(R=32):
    xy = coord_grid(R, coord_range=(-1, 1))  # localisation is measured in the frame [-1, 1]^2
    blob = (torch.exp(-((xy - torch.tensor([-0.5, 0.2]))**2).sum(1) / (2 * 0.12**2)) - 0.01).clamp_min(0).view(R, R)
    yy, xx = torch.meshgrid(torch.arange(R), torch.arange(R), indexing='ij')
    checker = ((yy // 4 + xx // 4) % 2).float()
    return torch.stack([blob, checker, torch.ones(R, R), torch.zeros(R, R)])


def test_localisation_synthetic_maps():
    L = localisation(synthetic())
    # blob: compact
    assert L['rg'][0] < 0.3 and L['components'][0] == 1 and L['entropy'][0] < 0.6 and L['area'][0] < 0.15
    assert torch.allclose(L['centroid'][0], torch.tensor([-0.5, 0.2]), atol=0.02)
    assert torch.allclose(L['peak'][0], torch.tensor([-0.5, 0.2]), atol=0.05)
    # checkerboard: spans, many pieces
    assert L['components'][1] == 32 and abs(L['entropy'][1] - 0.9) < 1e-6 and L['rg'][1] > 0.95 and L['area'][1] == 0.5
    # constant: area, entropy, rg exactly 1
    for key in ('area', 'entropy', 'rg', 'effective_area'): assert abs(L[key][2] - 1) < 1e-6, key
    assert L['components'][2] == 1
    # dead: NaN shape measures, zero counts
    assert not L['live'][3] and L['entropy'][3].isnan() and L['rg'][3].isnan() and L['centroid'][3].isnan().all()
    assert L['area'][3] == 0 and L['components'][3] == 0 and L['mean_active'][3] == 0
    assert torch.equal(L['area'], L['frequency'])


def test_components_match_per_map_label_loop():
    g = torch.Generator().manual_seed(0)
    maps = (torch.rand(20, 15, 11, generator=g) > 0.6).float() * torch.rand(20, 15, 11, generator=g)
    maps[4] = 0
    ref = [ndimage.label(m.numpy() > 0)[1] for m in maps]  # default structure: 4-connectivity
    assert components(maps).tolist() == ref


def test_localisation_invariant_to_scale_and_blocking():
    S = synthetic()
    a, b = localisation(S), localisation(3.5 * S)
    for k in ('entropy', 'rg', 'area', 'components', 'centroid'):
        torch.testing.assert_close(a[k], b[k], equal_nan=True)
    net, sae = small(dtype=torch.float32)
    A = atom_localisation(sae, net, 2, 12, block=7)
    B = localisation(firing_maps(sae, net, 2, 12))
    for k in B: torch.testing.assert_close(A[k], B[k], equal_nan=True, atol=1e-6, rtol=0)


def test_summarise_ignores_dead():
    s = summarise(localisation(synthetic()))
    assert s['n_atoms'] == 4 and s['n_dead'] == 1
    assert abs(s['area']['median'] - 0.5) < 1e-9 and abs(s['entropy']['q75'] - 0.95) < 1e-6
    assert all(np.isfinite(v['median']) for k, v in s.items() if isinstance(v, dict))


# ---------------------------------------------------------------- matching

def test_match_dictionaries_recovers_planted_permutation():
    g = torch.Generator().manual_seed(1)
    n = 60
    ma = F.avg_pool2d(torch.rand(n, 1, 24, 24, generator=g), 5, 1, 2).squeeze(1)
    ma[[3, 11]] = 0  # dead atoms
    perm = torch.randperm(n, generator=g)
    mb = ma[perm] + 0.01 * torch.rand(n, 24, 24, generator=g)
    mb[perm == 3] = 0; mb[perm == 11] = 0  # dead in B too
    m = match_dictionaries(ma, mb)
    live_b = (perm != 3) & (perm != 11)
    assert torch.equal(m['index'][perm[live_b]], torch.arange(n)[live_b])
    assert (m['index'][[3, 11]] == -1).all() and m['corr'][[3, 11]].isnan().all()
    live_a = m['index'] >= 0
    assert m['corr'][live_a].min() > 0.98
    # top-n by activity: only that many matched
    m5 = match_dictionaries(ma, mb, max_atoms=5)
    assert (m5['index'] >= 0).sum() == 5
    with pytest.raises(ValueError, match='share a grid'): match_dictionaries(ma, mb[:, :5])


def test_match_dictionaries_pearson():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(1, 6, 6, generator=g), torch.rand(1, 6, 6, generator=g)
    m = match_dictionaries(a, b)
    r = np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1]
    assert abs(m['corr'][0].item() - r) < 1e-5 and m['index'][0] == 0


# ---------------------------------------------------------------- contours

def test_edge_maps_and_contour_correlation():
    img = torch.zeros(3, 16, 16, 3); img[0, 4:12, 4:12] = 1; img[1, :, 8:] = 1; img[2] = 0.3
    E = edge_maps(img)
    assert E.shape == (3, 16, 16) and E[0].max() == 1 and E[2].abs().max() == 0
    assert E[0, 8, 8] == 0 and E[0, 4, 8] > 0 and E[1][:, :6].max() == 0
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 16, 16, generator=g); maps[4] = 0
    C = contour_correlation(maps, E)
    assert C.shape == (5, 3) and C[4].isnan().all() and C[:, 2].isnan().all()
    for i in range(4):
        for j in range(2):
            r = np.corrcoef(maps[i].flatten().numpy(), E[j].flatten().numpy())[0, 1]
            assert abs(C[i, j].item() - r) < 1e-5
    with pytest.raises(ValueError, match="images' resolution"): contour_correlation(maps[:, :8], E)


def test_contour_tracing_train_vs_test():
    img = torch.zeros(4, 16, 16); img[0, 4:12, 4:12] = 1; img[1, :, 8:] = 1; img[2, 2:6, 2:14] = 1; img[3, 10:, :] = 1
    E = edge_maps(img)
    maps = torch.stack([E[0], E[1], E[2] + E[3], torch.zeros(16, 16)])  # atoms tracing train images 0 and 1
    ct = contour_tracing(maps, img[:2], img[2:])
    assert ct['n_images'] == 2
    assert ct['diff'][0] > 0.3 and ct['diff'][1] > 0.3 and ct['diff'][2] < 0 and ct['diff'][3].isnan()
    assert contour_tracing(maps, img[:3], img[3:])['n_images'] == 1  # balanced counts


# ---------------------------------------------------------------- ablation

@pytest.mark.parametrize('backbone,C,scale', [('siren', 1, 1.), ('ffmlp', 3, 1.), ('siren', 3, 20.)])
def test_fast_scan_equals_brute_force(backbone, C, scale):
    "Both variants, every atom and head, 16x16 grid, float64; `scale` pushes outputs past [0, 1] so the clamp matters."
    net, sae = small(backbone, n_signals=3, C=C, n_atoms=32, k=4)
    with torch.no_grad(): net.head_w.mul_(scale)
    c = coord_grid(16).double(); y = torch.rand(3, 256, C, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad(): sae.b_dec.copy_(net.encode(c, 2).mean(0))
    fast = ablate_atoms(sae, net, 2, c, y, chunk=37)
    ref = brute_force_ablation(sae, net, 2, c, y)
    assert fast['drop'].shape == fast['drop_err'].shape == (32, 3)
    assert (fast['drop'] - ref['drop']).abs().max() < 1e-3 and (fast['drop_err'] - ref['drop_err']).abs().max() < 1e-3
    assert (fast['drop'] - ref['drop']).abs().max() < 1e-8  # in fact exact to rounding
    assert ref['drop_err'].abs().max() > 1e-3  # the check is not vacuous
    if scale > 1:  # the clamp is active
        with torch.no_grad(): out = net(c)
        assert ((out + 1) / 2 > 1).any() or ((out + 1) / 2 < 0).any()
    live = fast['support'] > 0
    assert (fast['drop'][~live] == 0).all() and (fast['drop_err'][~live] == 0).all()
    assert int(fast['support'].sum()) == fast['n_pairs']
    # where the change lands: nothing outside the support
    assert ref['outside_energy'].abs().max() == 0 and ref['outside_energy_err'].abs().max() == 0
    torch.testing.assert_close(ref['inside_share'][live], torch.ones(int(live.sum()), dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(fast['energy'], ref['energy'], atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(fast['energy_err'], ref['energy_err'], atol=1e-12, rtol=1e-9)


def test_unablated_psnr_and_rank1_edit_match_definitions():
    net, sae = small()
    c = coord_grid(12).double(); y = torch.rand(3, 144, 1, generator=torch.Generator().manual_seed(3)).double()
    fast = ablate_atoms(sae, net, 2, c, y)
    class Coh:
        def coords(self, dev=None): return c
        def targets(self, split='train'): return y
    sp = spliced_psnr(sae, net, 2, Coh())
    torch.testing.assert_close(fast['psnr_spliced'], sp['spliced'], atol=1e-9, rtol=0)
    torch.testing.assert_close(fast['psnr_inr'], sp['inr'], atol=1e-9, rtol=0)
    # variant A's brute force edits by a rank-1 update; it equals decoding the code with z_j = 0
    j = int(fast['support'].argmax())
    with torch.no_grad():
        h = net.encode(c, 2); z = sae.encode(h); zm = z.clone(); zm[:, j] = 0
        torch.testing.assert_close(sae.decode(zm), sae_reconstruct(sae, h) - z[:, j:j + 1] * sae.W_dec[j])
        from cohort_inrs.fit import psnr, to_image
        p_direct = psnr(to_image(net.decode_from(sae.decode(z), 2)), y) - psnr(to_image(net.decode_from(sae.decode(zm), 2)), y)
    torch.testing.assert_close(fast['drop'][j], p_direct, atol=1e-8, rtol=0)


def test_float32_scan_close_to_float64_brute():
    net, sae = small()
    c = coord_grid(12).double(); y = torch.rand(3, 144, 1, generator=torch.Generator().manual_seed(4)).double()
    ref = brute_force_ablation(sae, net, 2, c, y, atoms=[0, 5, 9])
    f32 = ablate_atoms(sae.float(), net.float(), 2, c.float(), y.float())
    assert f32['drop'].dtype == torch.float32
    assert (f32['drop'][[0, 5, 9]] - ref['drop']).abs().max() < 1e-3


def test_ablation_scan_cached(tmp_path):
    cfg = get_config('smoke', train=dict(steps=40))
    scan = ablation_scan(cfg, 'siren', 'digits', 1, progress=False)
    sae, _, net, coh = sae_model(cfg, 'siren', 'digits', 1, progress=False)
    P = coh.targets().shape[1]
    assert scan['drop'].shape == scan['drop_err'].shape == (sae.n_atoms, coh.n_train)
    assert int(scan['support'].sum()) <= P * sae.k
    again = ablation_scan(cfg, 'siren', 'digits', 1, progress=False)
    assert torch.equal(again['drop'], scan['drop'])
    top = scan['drop_err'].max(1).values.topk(2).indices
    ref = brute_force_ablation(sae, net, 1, coh.coords(), coh.targets(), atoms=top)
    assert (ref['drop_err'] - scan['drop_err'][top]).abs().max() < 1e-3
    assert ablation_key(cfg, 'siren', 'digits', 1)['kind'] == 'ablation'


def test_bench_ablation_small():
    r = bench_ablation(n_atoms=128, k=4, width=32, L=3, depth=1, resolution=8, n_signals=2, n_brute=8, device='cpu')
    assert {'fast_s', 'brute_s', 'ratio', 'target'} <= set(r) and r['ratio'] > 0 and 'extrapolated' in r['brute_note']


# ---------------------------------------------------------------- where an ablation changes the image (C6)

def brute_change(sae, net, depth, c, j, error_term=False):
    "The change map by definition: the whole grid through the later layers with atom j removed, |clamped image change| summed over heads and channels."
    with torch.no_grad():
        h = net.encode(c, depth); z = sae.encode(h); r = sae_reconstruct(sae, h)
        y0 = net.decode_from(spliced_input(h, r, error_term=error_term), depth)
        y1 = net.decode_from(spliced_input(h, r, r - z[:, j:j + 1] * sae.W_dec[j], error_term=error_term), depth)
    return (((y1 + 1) / 2).clamp(0, 1) - ((y0 + 1) / 2).clamp(0, 1)).abs().sum((0, 2))


@pytest.mark.parametrize('backbone,C,scale', [('siren', 1, 1.), ('ffmlp', 3, 1.), ('ffmlp', 3, 20.)])
def test_change_maps_equal_brute_force(backbone, C, scale):
    "A few atoms (widest, narrowest, others) of a float64 model, both variants; `scale` makes the clamp bite."
    net, sae = small(backbone, n_signals=3, C=C, n_atoms=32, k=4)
    with torch.no_grad(): net.head_w.mul_(scale)
    c = coord_grid(14).double()
    with torch.no_grad(): sae.b_dec.copy_(net.encode(c, 2).mean(0)); z = sae.encode(net.encode(c, 2))
    sup = (z > 0).sum(0); atoms = [int(sup.argmax()), int(sup.argmin()), 3, 17]
    for err in (False, True):
        cm = change_maps(sae, net, 2, c, atoms=atoms, error_term=err, chunk=29)
        ref = torch.stack([brute_change(sae, net, 2, c, j, err) for j in atoms])
        assert cm.shape == (4, 196)
        torch.testing.assert_close(cm, ref, atol=1e-12, rtol=0)
        assert ref[0].sum() > 1e-3  # not vacuous
    full = change_maps(sae, net, 2, c)  # every atom at once equals the chosen rows
    torch.testing.assert_close(full[atoms], change_maps(sae, net, 2, c, atoms=atoms), atol=1e-12, rtol=0)
    assert ((full > 0) & (z.T == 0)).sum() == 0  # nothing changes where the atom does not fire


def test_change_extent_planted():
    conf, scat = planted_maps(50, (24, 24), 'confined', 0.04, 2), planted_maps(50, (24, 24), 'scattered', 0.04, 2)
    Ec, Es = change_extent(conf), change_extent(scat)
    torch.testing.assert_close(Ec['area'], Es['area'])  # 23 of 576 pixels each: area cannot tell them apart
    assert abs(Ec['area'][0].item() - 23 / 576) < 1e-6
    assert Ec['rg'].max() < 0.3 and Es['rg'].min() > 0.7
    assert Ec['hull'].max() < 0.05 and Es['hull'].min() > 0.4
    # the 10 % threshold: a map with one strong pixel and faint spread changes has area 1 / 576
    m = torch.full((1, 24, 24), 0.05); m[0, 3, 3] = 1.
    assert abs(change_extent(m)['area'].item() - 1 / 576) < 1e-9 and abs(change_extent(m, 0.01)['area'].item() - 1) < 1e-9
    assert (inside_share(conf, conf) == 1).all() and (inside_share(scat, scat) == 1).all()


def test_controlled_locality_on_planted():
    "The extent test finds a confined-vs-spread difference and not a non-difference; the share-inside test cannot tell."
    conf, scat = planted_maps(60, (32, 32), 'confined', 0.05, 3), planted_maps(60, (32, 32), 'scattered', 0.05, 4)
    rg = lambda m: change_extent(m)['rg']
    res = controlled(lower_test, (rg(conf), rg(scat)), (rg(conf), rg(scat)), (rg(scat[:30]), rg(scat[30:])))
    assert res['status'] == 'holds' and res['control']['p'] < 1e-10 and not res['null']['detected']
    out = lambda m: 1 - inside_share(m, m)  # share outside the firing region, pointwise network: 0 for both kinds
    blind = controlled(lower_test, (out(conf), out(scat)), (out(conf), out(scat)), (out(scat[:30]), out(scat[30:])))
    assert blind['status'] == 'cannot tell' and not blind['control']['detected']


def test_match_by_drop():
    g = torch.Generator().manual_seed(1)
    da = 10 ** (torch.rand(200, generator=g) * 3 - 2); db = 10 ** (torch.rand(50, generator=g) * 2 - 1)
    ia, ib = match_by_drop(da, db, caliper=0.05)
    assert len(ia) >= 45 and len(set(ia.tolist())) == len(ia) and len(set(ib.tolist())) == len(ib)
    assert (da[ia].log10() - db[ib].log10()).abs().max() <= 0.05 and (ia[1:] > ia[:-1]).all()
    ia, ib = match_by_drop(torch.tensor([0., 0.005, 3.]), torch.tensor([0., 2.9]))  # below the floor: never matched
    assert ia.tolist() == [2] and ib.tolist() == [1]
    assert len(match_by_drop(torch.zeros(4), torch.ones(4))[0]) == 0
