"Tests of `cohort_inrs.sae`: TopK codes, the unit-norm decoder, FVU, AuxK, planted-dictionary recovery, splicing, resume, cache."
import pytest
import torch
import torch.nn.functional as F

from cohort_inrs.config import SAEConfig, get_config
from cohort_inrs.models import CohortINR
from cohort_inrs.sae import (SAE, topk_select, scatter_codes, topk_codes, kth_largest, batch_topk, geometric_median, codes_topk, decode_topk,
                             project_decoder_grad_, normalize_decoder_, fvu, auxk_loss, lr_factor, fit_sae,
                             planted_sampler, dictionary_recovery, activation_sampler, train_sae, save_sae, load_sae,
                             sae_model, sae_key, spliced_input, spliced_psnr, sae_metrics, sae_reconstruct)


def same(m1, m2):
    "Bit-equal state dicts (NaN == NaN, for the unused BatchTopK threshold)."
    s1, s2 = m1.state_dict(), m2.state_dict()
    return s1.keys() == s2.keys() and all(torch.allclose(s1[k], s2[k], rtol=0, atol=0, equal_nan=True) for k in s1)


def small_inr(seed=0):
    return CohortINR('siren', 3, 1, width=32, n_shared=3, seed=seed)


def grid(R=8):
    t = torch.linspace(-1, 1, R)
    y, x = torch.meshgrid(t, t, indexing='ij')
    return torch.stack([x.flatten(), y.flatten()], -1)


# ---------------------------------------------------------------- codes

def test_topk_exactly_k_selected_nonnegative_with_ties():
    k = 3
    pre = torch.tensor([[1., 1., 1., 1., 1., 1.],      # six-way tie: still exactly 3 selected
                        [5., 2., 2., 2., -1., 0.],     # tie for 2nd..4th place
                        [-1., -2., 0.5, -3., -4., -5.]])  # one positive: 3 selected, 1 non-zero
    v, i = topk_select(pre, k)
    assert v.shape == i.shape == (3, k)
    for r in range(3): assert len(set(i[r].tolist())) == k  # k distinct indices per row
    z = scatter_codes(v, i, 6)
    assert (z >= 0).all()
    assert (z > 0).sum(-1).tolist() == [3, 3, 1]
    assert z[1, 0] == 5. and sorted(z[1].tolist())[-3:] == [2., 2., 5.]
    # definition: the selected values are the k largest ReLU'd pre-activations
    assert torch.equal(z.sort(-1, descending=True).values[:, :k], F.relu(pre).sort(-1, descending=True).values[:, :k])


def test_sae_topk_codes_random():
    sae = SAE(16, 64, 5, seed=1)
    z = sae.encode(torch.randn(200, 16)).detach()
    assert z.shape == (200, 64) and (z >= 0).all()
    assert ((z > 0).sum(-1) <= 5).all() and (z > 0).sum(-1).float().mean() > 4  # at most k, nearly always k
    pre = sae.pre_acts(torch.randn(7, 16)).detach()
    kth = pre.topk(5, -1).values[:, -1:]
    z2 = sae.activate(pre)
    assert torch.equal(z2 > 0, (pre >= kth) & (pre > 0))  # no ties in continuous data


def test_topk_codes_equal_topk_scatter_and_train_identically(monkeypatch):
    "The chunked threshold gives topk's codes and gradients, so an SAE trains to the same bits either way."
    g = torch.Generator().manual_seed(1)
    pre = torch.randn(256, 1024, generator=g)
    assert torch.equal(kth_largest(pre, 32), pre.sort(-1, descending=True).values[:, 31:32])
    assert torch.equal(topk_codes(pre, 32), scatter_codes(*topk_select(pre, 32), 1024))
    assert ((topk_codes(pre, 32) > 0).sum(-1) == 32).all()  # all 32 positive here
    tie = torch.tensor([[5., 2., 2., 2., 2., 1., 0., -1.]])  # a four-way tie for 2nd: exactly 3 kept, as topk
    assert (topk_codes(tie, 3) > 0).sum() == 3
    def train(activate):
        monkeypatch.setattr(SAE, 'activate', activate)
        sae = SAE(16, 256, 8, seed=3)
        def batches():
            gg = torch.Generator().manual_seed(0)
            while True: yield torch.randn(64, 16, generator=gg)
        fit_sae(sae, batches(), 60, 3e-3, progress=False)
        return sae
    new = train(SAE.activate)
    old = train(lambda self, pre: scatter_codes(*topk_select(pre, self.k), self.n_atoms))
    assert same(new, old)


def test_batch_topk_selects_k_times_rows_and_threshold_at_inference():
    pre = torch.randn(10, 20)
    z = batch_topk(pre, 3)
    assert (z > 0).sum() == 30 and (z >= 0).all()  # continuous data: all 30 kept values are positive
    sae = SAE(4, 20, 3, variant='batchtopk')
    sae.eval()
    with pytest.raises(RuntimeError, match='no inference threshold'): sae.encode(torch.randn(2, 4))
    sae.threshold.fill_(0.1)
    x = torch.randn(5, 4); p = sae.pre_acts(x).detach()
    assert torch.equal(sae.encode(x).detach(), p * (p > 0.1))
    sae.train(); assert ((sae.encode(x) > 0).sum() <= 15)


def test_bad_arguments():
    with pytest.raises(ValueError, match='Unknown SAE variant'): SAE(4, 8, 2, variant='gated')
    with pytest.raises(ValueError, match='k must be'): SAE(4, 8, 9)


def test_init_conventions():
    sae = SAE(16, 48, 4, seed=3)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(48), atol=1e-6)
    assert torch.equal(sae.W_enc.detach(), sae.W_dec.detach().T) and sae.W_enc.data_ptr() != sae.W_dec.data_ptr()
    assert (sae.b_enc == 0).all() and (sae.b_dec == 0).all()
    assert same(SAE(16, 48, 4, seed=3), sae) and not torch.equal(SAE(16, 48, 4, seed=4).W_dec, sae.W_dec)


def test_sparse_decode_equals_dense():
    for variant in ('topk', 'batchtopk', 'relu_l1'):
        sae = SAE(16, 64, 4, variant=variant, seed=2)
        with torch.no_grad(): sae.b_dec.normal_()
        sae.train()
        x = torch.randn(3, 5, 16)  # leading batch dims
        with torch.no_grad():
            z = sae.encode(x); dense = sae.decode(z)
            assert torch.allclose(decode_topk(sae, *codes_topk(z)), dense, atol=1e-5)
            if variant == 'topk':
                v, i = topk_select(sae.pre_acts(x), 4)
                assert torch.allclose(sae.decode_topk(v, i), dense, atol=1e-5)
                assert torch.allclose(sae.decode_topk(*codes_topk(z, width=4)), dense, atol=1e-5)


def test_geometric_median():
    pts = torch.tensor([[0., 0.], [2., 0.], [0., 2.], [2., 2.], [50., 50.]])
    m = geometric_median(pts)
    from scipy.optimize import minimize
    obj = lambda q: (pts.double() - torch.as_tensor(q)).norm(dim=1).sum().item()
    ref = minimize(obj, x0=[1., 1.], method='Nelder-Mead', options=dict(xatol=1e-8, fatol=1e-10)).x
    assert (m.double() - torch.as_tensor(ref)).norm() < 1e-3 and obj(m.double()) <= obj(ref) + 1e-6
    assert m.norm() < 3 and pts.mean(0).norm() > 10  # robust to the outlier, unlike the mean
    sym = torch.tensor([[1., 0.], [-1., 0.], [0., 1.], [0., -1.]])
    assert geometric_median(sym).norm() < 1e-6


# ---------------------------------------------------------------- decoder constraint

def test_gradient_projection_orthogonal_to_atoms():
    sae = SAE(8, 32, 4)
    with torch.no_grad(): sae.W_dec.mul_(torch.rand(32, 1) + 0.5)  # works for non-unit rows too
    g = torch.randn(32, 8); sae.W_dec.grad = g.clone()
    project_decoder_grad_(sae)
    u = F.normalize(sae.W_dec.detach(), dim=1)
    assert (sae.W_dec.grad * u).sum(1).abs().max() < 1e-5
    assert torch.allclose(sae.W_dec.grad, g - (g * u).sum(1, keepdim=True) * u, atol=1e-6)
    normalize_decoder_(sae)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32), atol=1e-6)


def test_decoder_rows_unit_norm_after_training():
    g = torch.Generator().manual_seed(0)
    for variant in ('topk', 'batchtopk', 'relu_l1'):
        sae = SAE(8, 32, 4, variant=variant)
        h = fit_sae(sae, iter(lambda: torch.randn(64, 8, generator=g) * 3 + 1, None), steps=15, lr=1e-2,
                    log_every=5, progress=False, auxk=True, dead_steps=2)
        assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32), atol=1e-5), variant
        assert h['step'].tolist() == [0, 5, 10, 14] and torch.isfinite(h['fvu']).all()
        assert not sae.training  # returned in eval mode
        if variant == 'batchtopk': assert torch.isfinite(sae.threshold) and sae.threshold > 0


# ---------------------------------------------------------------- losses

def test_fvu_hand_computed():
    # mean [1, 2]; variance 1+4+1+4 = 10; error 1+1 = 2 -> 0.2 (SAELens PR #665: EV = 0.8)
    assert fvu(torch.tensor([[2., 0], [0, 4]]), torch.tensor([[2., 1], [0, 3]])).item() == pytest.approx(0.2, abs=1e-7)
    # mean [2/3, 2/3]; variance 5/9 + 5/9 + 2/9 = 4/3; error .25 + .25 = .5 -> 3/8
    x = torch.tensor([[1., 0], [0, 1], [1, 1]]); r = torch.tensor([[1., 0], [0, 1], [.5, .5]])
    assert fvu(x, r).item() == pytest.approx(0.375, abs=1e-7)
    assert fvu(x, x).item() == 0 and fvu(x, x.mean(0).expand_as(x)).item() == pytest.approx(1, abs=1e-6)


def test_auxk_zero_when_nothing_dead_and_bias_free():
    sae = SAE(8, 32, 4, seed=1); x = torch.randn(16, 8)
    pre = sae.pre_acts(x); r, _ = sae(x)
    none = torch.zeros(32, dtype=torch.bool)
    assert auxk_loss(sae, pre, x - r, none).item() == 0.
    dead = none.clone(); dead[:12] = True
    resid = (x - r)
    la = auxk_loss(sae, pre, resid, dead)
    assert la.item() > 0
    # b_dec is not part of the auxiliary decode: shifting it changes nothing for fixed pre-activations and residual
    with torch.no_grad(): sae.b_dec.add_(3.)
    assert auxk_loss(sae, pre, resid, dead).item() == pytest.approx(la.item(), rel=1e-6)
    # the residual is detached: no gradient reaches the main reconstruction through it
    rr = resid.detach().requires_grad_()
    auxk_loss(sae, pre.detach(), rr, dead).backward()
    assert rr.grad is None and sae.W_dec.grad is not None
    # k_aux defaults to d_in // 2 and the scale is min(n_dead / k_aux, 1): a perfect aux reconstruction gives 0
    e = torch.zeros(2, 8); e[0] = sae.W_dec[0].detach() * 2; e[1] = sae.W_dec[1].detach()
    p = torch.full((2, 32), -1.); p[0, 0] = 2.; p[1, 1] = 1.
    d2 = none.clone(); d2[:2] = True
    assert auxk_loss(sae, p, e, d2).item() == pytest.approx(0, abs=1e-10)


def test_lr_factor():
    assert [lr_factor(s, 10, .2, .6) for s in range(10)] == [.5, 1, 1, 1, 1, 1, 1, .75, .5, .25]
    assert all(lr_factor(s, 7) == 1 for s in range(7))


# ---------------------------------------------------------------- recovery

def test_planted_dictionary_recovery():
    g = torch.Generator().manual_seed(1)  # a different stream from the SAE's init (seed 0)
    planted = F.normalize(torch.randn(64, 32, generator=g), dim=1)
    sae = SAE(32, 128, 3, seed=0)
    before = dictionary_recovery(sae.W_dec.detach(), planted)
    data = planted_sampler(planted, 256, 3, g)
    with torch.no_grad(): sae.b_dec.copy_(next(data).mean(0))
    h = fit_sae(sae, data, steps=300, lr=5e-3, gen=g, log_every=100, progress=False)
    after = dictionary_recovery(sae.W_dec.detach(), planted)
    assert before < 0.5 and after > 0.95, (before, after)  # measured: 0.44 -> 0.987
    assert h['fvu'][-1] < 0.1 and h['dead'][-1] == 0


# ---------------------------------------------------------------- INR activations

def test_activation_sampler_no_grad_leak_and_grid_mode():
    net = small_inr()
    s = activation_sampler(net, 2, 50, generator=torch.Generator().manual_seed(0))
    a = next(s)
    assert a.shape == (50, 32) and not a.requires_grad
    assert torch.is_grad_enabled()  # the suspended generator must not leave grad mode off for the caller
    c = grid(4)
    b = next(activation_sampler(net, 2, 30, grid=c, generator=torch.Generator().manual_seed(0)))
    ref = net.encode(c, 2).detach()
    assert all((ref == r).all(-1).any() for r in b)
    with pytest.raises(ValueError, match='depth'): next(activation_sampler(net, 7, 4))


def test_splice_with_error_term_reproduces_inr_exactly():
    net = small_inr(); c = grid()
    with torch.no_grad():
        for depth in (1, 2, 3):
            sae = SAE(32, 64, 4, seed=depth)
            h = net.encode(c, depth); r = sae_reconstruct(sae, h, chunk=10)
            out = net.decode_from(spliced_input(h, r, error_term=True), depth)
            ref = net(c)
            assert (out - ref).abs().max() <= 1e-6 and torch.equal(out, ref)
            naive = net.decode_from(r + (h - r), depth)  # the textbook form is only close, which is why we avoid it
            assert (naive - ref).abs().max() < 1e-4
            assert not torch.equal(net.decode_from(spliced_input(h, r), depth), ref)
            # an edit moves h by exactly the edit
            edited = r - sae.W_dec[0]
            assert torch.allclose(spliced_input(h, r, edited, error_term=True), h - sae.W_dec[0], atol=1e-6)


def test_train_sae_resume_equivalence(tmp_path):
    net = small_inr()
    for variant, auxk in (('topk', True), ('batchtopk', False)):
        cfg = SAEConfig(n_atoms=48, k=4, lr=3e-3, batch=64, steps=30, variant=variant, auxk=auxk)
        ck = tmp_path/f'{variant}.ckpt.safetensors'
        full, h_full = train_sae(net, 2, cfg, progress=False, log_every=5, dead_samples=128)
        train_sae(net, 2, cfg, steps=15, progress=False, ckpt_path=ck, ckpt_every=10, log_every=5, dead_samples=128)
        assert ck.exists()
        resumed, h_res = train_sae(net, 2, cfg, progress=False, ckpt_path=ck, ckpt_every=10, log_every=5, dead_samples=128)
        assert same(full, resumed), variant
        for k in h_full: assert torch.equal(h_full[k], h_res[k]), (variant, k)


def test_compiled_sae_training_equals_eager():
    "`compile=True` fuses the dense forward; over 20 steps the codes and weights stay those of the eager run."
    net = small_inr(); cfg = SAEConfig(n_atoms=48, k=4, lr=3e-3, batch=64, steps=20)
    eager, h_e = train_sae(net, 2, cfg, progress=False, log_every=5)
    fused, h_c = train_sae(net, 2, cfg, progress=False, log_every=5, compile=True)
    torch.testing.assert_close(fused.W_dec, eager.W_dec, rtol=1e-4, atol=1e-5)  # float32: the fused GEMM epilogue rounds differently
    torch.testing.assert_close(h_c['fvu'], h_e['fvu'], rtol=1e-3, atol=1e-5)


def test_train_sae_options():
    net = small_inr(); cfg = SAEConfig(n_atoms=32, k=4, lr=1e-3, batch=64, steps=3)
    with pytest.raises(ValueError, match='Unknown train_sae option'): train_sae(net, 1, cfg, lr_decay=1)
    with pytest.raises(ValueError, match='b_dec_init'): train_sae(net, 1, cfg, b_dec_init='zero', progress=False)
    sae, _ = train_sae(net, 1, cfg, steps=0, progress=False, b_dec_init='median')
    x0 = next(activation_sampler(net, 1, 16384, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(sae.b_dec, geometric_median(x0), atol=1e-6)
    sae, _ = train_sae(net, 1, cfg, steps=0, progress=False)
    assert torch.allclose(sae.b_dec, x0.mean(0), atol=1e-6)


# ---------------------------------------------------------------- cache and metrics

def test_save_load_errors(tmp_path):
    sae = SAE(8, 16, 2, variant='batchtopk'); sae.threshold.fill_(0.25)
    p = tmp_path/'s.safetensors'
    save_sae(sae, p, {'config_hash': 'a'})
    back = load_sae(p, expect={'config_hash': 'a'})
    assert same(sae, back) and back.variant == 'batchtopk' and not back.training
    with pytest.raises(ValueError, match='different configuration'): load_sae(p, expect={'config_hash': 'b'})
    p.write_bytes(b'not a safetensors file')
    with pytest.raises(ValueError, match='not a readable safetensors'): load_sae(p)
    from cohort_inrs.store import save_tensors
    save_tensors(p, {'x': torch.zeros(1)}, {'kind': 'cohort_inr'})
    with pytest.raises(ValueError, match='not a sae file'): load_sae(p)


def test_sae_model_cache_and_metrics():
    cfg = get_config('smoke', train=dict(steps=20), sae=dict(steps=20))
    sae, hist, net, coh = sae_model(cfg, 'siren', 'digits', 2, progress=False)
    again, *_ = sae_model(cfg, 'siren', 'digits', 2, progress=False)
    assert same(sae, again) and hist['step'][-1] == 19
    assert sae_key(cfg, 'siren', 'digits', 2) != sae_key(cfg, 'siren', 'digits', 1)
    assert sae_key(cfg, 'siren', 'digits', 2) == sae_key(get_config('smoke', train=dict(steps=20), sae=dict(steps=20, depths=(2,))), 'siren', 'digits', 2)
    with pytest.raises(ValueError, match='depth'): sae_model(cfg, 'siren', 'digits', 9, progress=False)

    m = sae_metrics(sae, net, 2, coh, n_random=1000, chunk=7)
    with torch.no_grad():
        h = net.encode(coh.coords(), 2); r, z = sae(h)
    assert m['fvu'] == pytest.approx(fvu(h, r).item(), rel=1e-4)  # chunked == one-shot
    assert m['explained_variance'] == pytest.approx(1 - m['fvu'])
    assert m['l0'] == pytest.approx((z > 0).sum(-1).float().mean().item())
    assert m['dense_fraction'] == pytest.approx(((z > 0).float().mean(0) > 0.5).float().mean().item())
    assert m['dead_fraction'] <= ((z > 0).sum(0) == 0).float().mean().item()  # random points can only revive atoms
    assert m['psnr_spliced_err'] == m['psnr_inr'] and m['psnr_spliced'] < m['psnr_inr']
    ps = spliced_psnr(sae, net, 2, coh)
    assert ps['inr'].shape == (coh.n_train,) and torch.equal(ps['spliced_err'], ps['inr'])


def test_sparse_training_step_matches_dense():
    "The sparse TopK step (gathers/scatters over the k winners) follows the dense step."
    import torch
    from cohort_inrs.sae import SAE, fit_sae
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    runs = []
    for sparse in (False, True):
        sae = SAE(16, 48, 4, seed=3).double()
        fit_sae(sae, iter(lambda: x, None), 5, 1e-3, log_every=5, progress=False, sparse=sparse)
        runs.append([p.detach().clone() for p in sae.parameters()])
    for a, b in zip(*runs): assert torch.allclose(a, b, atol=1e-9), (a - b).abs().max()
