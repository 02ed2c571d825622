"Fitting: metrics on known inputs, exact resume, the cache, and batched test-time fits equal a loop."
import pytest, torch
from skimage.metrics import structural_similarity
from cohort_inrs.config import get_config
from cohort_inrs.data import load_cohort
from cohort_inrs.models import CohortINR, StackedINR, DepthStack, canonical_configs
from cohort_inrs.fit import (psnr, ssim, train_cohort, fit_stack, fit_single, cohort_model, freeze_sweep, reconstruct, run_sweep)

@pytest.fixture(scope='module')
def digits():
    return load_cohort('digits', get_config('smoke').data)

def test_psnr_known_values_and_averaging():
    t = torch.zeros(3, 8, 8, 1); p = t.clone()
    p[0] += 0.1; p[1] += 0.01; p[2] += 0.001         # MSE 1e-2, 1e-4, 1e-6
    assert torch.allclose(psnr(p, t), torch.tensor([20., 40., 60.]), atol=1e-3)
    assert abs(psnr(p, t).mean().item() - 40) < 1e-3   # mean of PSNRs, not PSNR of the mean MSE (24.3 dB)

def test_ssim_matches_skimage():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 24, 24, 1, generator=g); b = (a * 0.8 + 0.1 * torch.rand(3, 24, 24, 1, generator=g))
    ref = [structural_similarity(a[i, ..., 0].numpy(), b[i, ..., 0].numpy(), data_range=1., gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False) for i in range(3)]
    assert torch.allclose(ssim(b, a), torch.tensor(ref, dtype=torch.float32), atol=1e-4)

def test_resume_is_bit_exact(digits, tmp_path):
    cfg = get_config('smoke'); x, y = digits.coords(), digits.targets('train')
    mk = lambda: CohortINR.from_config(cfg.model, 'ffmlp', digits.n_train, 1, digits.resolution, seed=3)
    a = mk(); train_cohort(a, x, y, 30, 1e-3, batch_pixels=40, log_every=5, progress=False)
    ck = tmp_path/'ck.safetensors'
    b = mk(); train_cohort(b, x, y, 17, 1e-3, batch_pixels=40, log_every=5, ckpt_path=ck, ckpt_every=5, progress=False)
    c = mk(); train_cohort(c, x, y, 30, 1e-3, batch_pixels=40, log_every=5, ckpt_path=ck, ckpt_every=5, progress=False)
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), c.state_dict().values()))

def test_cohort_model_is_cached_and_learns(digits):
    cfg = get_config('smoke', train=dict(steps=200))
    net, hist, coh = cohort_model(cfg, 'siren', 'digits', progress=False)
    net2, _, _ = cohort_model(cfg, 'siren', 'digits', progress=False)
    assert all(torch.equal(u, v) for u, v in zip(net.state_dict().values(), net2.state_dict().values()))
    mean_img = coh.train.mean(0, keepdim=True).expand_as(coh.train)
    assert psnr(reconstruct(net, coh), coh.train).mean() > psnr(mean_img, coh.train).mean() + 10

def test_a_cohort_with_its_own_width_trains_and_sweeps_at_that_width():
    "`model.cohort_widths` narrows one cohort's network (cache key, INR, test-time fits); the other cohort keeps the profile's width."
    cfg = get_config('smoke', train=dict(steps=20), transfer=dict(steps=6, log_every=3, early_step=3), **{'model.cohort_widths': ('digits:12',)})
    net, _, _ = cohort_model(cfg, 'siren', 'digits', progress=False)
    assert net.width == 12 and net.head_w.shape[-1] == 12  # the shared layers and the heads are 12 wide
    other, _, _ = cohort_model(cfg, 'siren', 'lfw@16', progress=False)
    assert other.width == cfg.model.width == 32
    sw = freeze_sweep(cfg, 'siren', 'digits', progress=False)
    assert torch.isfinite(sw['psnr']).all() and sw['psnr'].shape[0] == len(sw['configs'])
    plain, _, _ = cohort_model(get_config('smoke', train=dict(steps=20)), 'siren', 'digits', progress=False)
    assert plain.width == 32  # without the entry the cache gives the profile's width, not the narrow INR

def trained_cohort(digits, backbone):
    "A smoke-size cohort INR trained for 40 steps on `digits`: the starting point of the test-time fit tests."
    cfg = get_config('smoke')
    cnet = CohortINR.from_config(cfg.model, backbone, digits.n_train, 1, digits.resolution, seed=0)
    train_cohort(cnet, digits.coords(), digits.targets('train'), 40, 1e-3, progress=False)
    return cnet

@pytest.mark.parametrize('backbone', ['siren', 'ffmlp'])
def test_batched_fit_equals_loop(digits, backbone):
    cnet = trained_cohort(digits, backbone)
    # float64: in float32 Adam's first step maps a gradient element near its eps (1e-8) to anything up to lr, so the
    # last-bit differences of batched and single summation can move a weight by ~4e-4 (measured); in float64 they agree to ~1e-8
    cnet, xy, tg = cnet.double(), digits.coords().double(), digits.targets('test').double()
    for d, mode in canonical_configs(cnet.n_shared):
        st = StackedINR.from_cohort(cnet, d, mode, seeds=[0, 1, 2]).double()
        tgt = tg[[0, 1, 0]]
        singles = [st.single(m).double() for m in range(3)]
        rb = fit_stack(st, xy, tgt, steps=25, lr=1e-3, log_every=5)
        for m, n1 in enumerate(singles):
            r1 = fit_single(n1, d, xy, tgt[m], steps=25, lr=1e-3, log_every=5)
            for (k, u), v in zip(n1.state_dict().items(), st.single(m).double().state_dict().values()):  # `single` builds float32: 1e-7 rounding
                assert torch.allclose(u, v, atol=1e-6, rtol=1e-6), (d, mode, k)
            assert (10 * torch.log10(r1['mse'][:, 0] / rb['mse'][:, m])).abs().max() < 1e-4

@pytest.mark.parametrize('backbone', ['siren', 'ffmlp'])
def test_one_depth_stack_equals_a_stack_per_configuration(digits, backbone):
    "The sweep fits every (depth, mode) in one DepthStack; each model must follow its own stack's trajectory."
    cnet = trained_cohort(digits, backbone)
    cnet, xy, tg = cnet.double(), digits.coords().double(), digits.targets('test').double()[:2]
    configs = canonical_configs(cnet.n_shared)
    make = lambda d, mode: StackedINR.from_cohort(cnet, d, mode, seeds=[0, 1]).double()
    merged = fit_stack(DepthStack([make(d, m) for d, m in configs]), xy, tg.repeat(len(configs), 1, 1), steps=25, lr=1e-3, log_every=5)
    for k, (d, mode) in enumerate(configs):
        alone = fit_stack(make(d, mode), xy, tg, steps=25, lr=1e-3, log_every=5)
        torch.testing.assert_close(merged['mse'][:, 2*k:2*k+2], alone['mse'], rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(merged['out'][2*k:2*k+2], alone['out'], rtol=1e-8, atol=1e-10)

@pytest.mark.parametrize('mode', [True, 'step'])
@pytest.mark.parametrize('backbone', ['siren', 'ffmlp'])
def test_compiled_fit_equals_eager(digits, backbone, mode):
    "`compile=True` (forward and loss) and `compile='step'` (the whole Adam step) run the same arithmetic fused: in float64 equal to eager to ~1e-9 over 20 steps."
    cnet = trained_cohort(digits, backbone)
    # float64 for the reason given in test_batched_fit_equals_loop (float32 differs by up to 0.02 dB here: Adam near eps)
    cnet, xy = cnet.double(), digits.coords().double()
    configs = canonical_configs(cnet.n_shared); tg = digits.targets('test')[:2].double().repeat(len(configs), 1, 1)
    make = lambda: DepthStack([StackedINR.from_cohort(cnet, d, m, seeds=[0, 1]).double() for d, m in configs])
    eager = fit_stack(make(), xy, tg, steps=20, lr=1e-3, log_every=5)
    fused = fit_stack(make(), xy, tg, steps=20, lr=1e-3, log_every=5, compile=mode)
    torch.testing.assert_close(fused['mse'], eager['mse'], rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(fused['out'], eager['out'], rtol=1e-7, atol=1e-9)

def test_sweep_shapes_and_baselines():
    cfg = get_config('smoke')
    sw = freeze_sweep(cfg, 'ffmlp', 'digits', progress=False)
    L = cfg.model.n_shared
    assert sw['configs'] == [f'{m}@{d}' for d, m in canonical_configs(L)]
    assert sw['psnr'].shape == (len(sw['configs']), cfg.transfer.steps // cfg.transfer.log_every + 1, 2, 1)
    assert int(sw['step'][-1]) == cfg.transfer.steps

def test_train_step_is_adam_in_float32_and_leaves_frozen_parameters():
    "`train_step` (eager) follows `adam` in float32 within rounding, at depth L (heads only) and with a frozen bias, which it leaves untouched."
    from cohort_inrs.fit import train_step, stack_loss, adam
    g = torch.Generator().manual_seed(0)
    cnet = CohortINR('siren', 4, 3, 16, 3, 30.); xy = torch.rand(50, 2, generator=g); tgt = torch.rand(2, 50, 3, generator=g) * 2 - 1
    for depth, freeze_bias in [(3, False), (1, True)]:
        ref, new = [StackedINR.from_cohort(cnet, depth, 'reinit' if depth < 3 else 'transfer', seeds=[0, 1], out_channels=3) for _ in range(2)]
        for st in (ref, new): st.head_b.requires_grad_(not freeze_bias)
        b0 = new.head_b.detach().clone()
        opt, step = adam([q for q in ref.parameters() if q.requires_grad], 1e-3), train_step(new, 1e-3, compile=False)
        pre = ref.prefix(xy)
        for _ in range(50):
            out, per = stack_loss(ref, pre, tgt); opt.zero_grad(); per.sum().backward(); opt.step()
            step(pre, tgt)
        for a, b in zip(ref.parameters(), new.parameters()): torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        if freeze_bias: assert torch.equal(new.head_b, b0)
        else: assert not torch.equal(new.head_b, b0)
    for q in new.parameters(): q.requires_grad_(False)
    with pytest.raises(ValueError, match='nothing to train'): train_step(new, 1e-3)
