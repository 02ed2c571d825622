"Tests of `cohort_inrs.models`: init statistics, Fourier features, fused heads, exact depth splits, stacked INRs, checkpoints."
import math
import pytest
import torch
import torch.nn.functional as F

from cohort_inrs.config import ModelConfig
from cohort_inrs.models import (CohortINR, StackedINR, canonical_configs, default_ff_sigma, init_linear, load_inr,
                                make_generator, save_inr, weight_bound, bias_bound, fit_seed, TAIL_MODES)

BACKBONES = ('siren', 'ffmlp')


def grid(R):
    "R x R grid in [-1, 1]^2 as (P, 2) (x, y)."
    t = torch.linspace(-1, 1, R)
    y, x = torch.meshgrid(t, t, indexing='ij')
    return torch.stack([x.flatten(), y.flatten()], -1)


XY = grid(8)


def small(backbone, n=3, c=2, seed=0, **kw):
    return CohortINR(backbone, n, c, width=32, n_shared=3, ff_m=16, ff_sigma=1.5, seed=seed, **kw)


def uniform_var_ratio(t, bound):
    "var(t) relative to the variance of U(-bound, bound), bound^2 / 3."
    return t.double().var().item() / (bound ** 2 / 3)


# ---------------------------------------------------------------- init

def test_siren_init_statistics_full_size():
    net = CohortINR('siren', 4, 3)  # width 256, L = 5, w0 = 30
    W1 = net.enc_w[0]
    assert W1.shape == (256, 2) and W1.abs().max() <= 0.5 and W1.abs().max() > 0.49  # first layer: U(+-1/fan_in)
    hidden = math.sqrt(6 / 256) / 30
    for l in range(1, 5):
        W = net.enc_w[l]
        assert W.shape == (256, 256) and W.abs().max() <= hidden
        assert abs(uniform_var_ratio(W, hidden) - 1) < 0.05, l
    assert net.head_w.abs().max() <= hidden  # head: U(+-sqrt(6/fan_in)/w0)
    assert abs(uniform_var_ratio(net.head_w, hidden) - 1) < 0.15  # 3072 draws: looser
    assert net.enc_b[0].abs().max() <= 1 / math.sqrt(2) and net.enc_b[0].abs().max() > 0.6  # default bias init
    for l in range(1, 5): assert net.enc_b[l].abs().max() <= 1 / 16
    assert net.head_b.abs().max() <= 1 / 16


def test_ffmlp_init_is_pytorch_default():
    net = CohortINR('ffmlp', 2, 1)
    assert net.enc_w[0].shape == (256, 512)
    for l, W in enumerate(net.layer_weights()):
        bd = 1 / math.sqrt(W.shape[1])
        assert W.abs().max() <= bd and abs(uniform_var_ratio(W, bd) - 1) < 0.05
        assert net.enc_b[l].abs().max() <= bd
    ref = torch.nn.Linear(256, 256).weight  # PyTorch's own init has the same bound
    assert ref.abs().max() <= weight_bound('ffmlp', 256)


def test_init_is_seeded_and_device_free():
    a, b, c = small('siren', seed=3), small('siren', seed=3), small('siren', seed=4)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.enc_w[1], c.enc_w[1])
    W, bias = init_linear('siren', 16, 8, make_generator(0, 2), lead=(3,))
    assert W.shape == (3, 8, 16) and bias.shape == (3, 8)
    assert W.abs().max() <= weight_bound('siren', 16) and bias.abs().max() <= bias_bound(16)


# ---------------------------------------------------------------- Fourier features

def test_ff_sigma_rule():
    assert default_ff_sigma(25) == pytest.approx(4.0)  # coordinates on [0, 1]: Nyquist is (R - 1) / 2 cycles per unit
    assert default_ff_sigma(8) == pytest.approx(7 / 6)
    assert default_ff_sigma(64) == 10.0 and default_ff_sigma(256) == 10.0  # Tancik et al.'s sigma = 10 on [0, 1]
    assert default_ff_sigma(25, span=2) == pytest.approx(2.0) and default_ff_sigma(256, span=2) == 5.0  # the same bandwidth on [-1, 1]
    for R in range(2, 300): assert 3 * default_ff_sigma(R) <= (R - 1) / 2 + 1e-9
    assert CohortINR.from_config(ModelConfig(ff_m=16, width=8, n_shared=1), 'ffmlp', 1, resolution=25).ff_sigma == 4.0
    assert CohortINR.from_config(ModelConfig(ff_sigma=4., ff_m=16, width=8, n_shared=1), 'ffmlp', 1).ff_sigma == 4.0
    with pytest.raises(ValueError, match='resolution'): CohortINR.from_config(ModelConfig(), 'ffmlp', 1)
    with pytest.raises(ValueError, match='at least 2'): default_ff_sigma(1)


def test_ffmlp_B_std_and_seeds(tmp_path):
    net = CohortINR('ffmlp', 1, 1, width=16, n_shared=2, ff_m=1024, ff_sigma=2.0, seed=0)
    assert net.B.shape == (1024, 2)
    assert net.B.std().item() == pytest.approx(2.0, rel=0.05)
    assert not torch.equal(net.B, CohortINR('ffmlp', 1, 1, width=16, n_shared=2, ff_m=1024, ff_sigma=2.0, seed=1).B)
    back = load_inr(save_inr(net, tmp_path / 'ff.safetensors'))
    assert torch.equal(back.B, net.B)
    feats = net.features(XY)
    assert feats.shape == (64, 2048) and torch.allclose(feats[:, :1024] ** 2 + feats[:, 1024:] ** 2, torch.ones(()), atol=1e-5)


# ---------------------------------------------------------------- cohort INR

@pytest.mark.parametrize('backbone', BACKBONES)
def test_fused_heads_equal_loop_of_heads(backbone):
    net = small(backbone, n=5, c=3)
    out = net(XY)
    assert out.shape == (5, 64, 3)
    h = net.encode(XY, 3)
    loop = torch.stack([F.linear(h, net.head_w[n], net.head_b[n]) for n in range(5)])
    torch.testing.assert_close(out, loop, atol=1e-6, rtol=0)
    torch.testing.assert_close(net.decode_from(h, 3, head=4), out[4], atol=1e-6, rtol=0)
    torch.testing.assert_close(net.decode_from(h, 3, head=[4, 1]), out[[4, 1]], atol=1e-6, rtol=0)
    torch.testing.assert_close(net.decode_from(h, 3, head=torch.tensor([2])), out[[2]], atol=1e-6, rtol=0)


@pytest.mark.parametrize('backbone', BACKBONES)
def test_encode_decode_split_is_exact(backbone):
    net = small(backbone)
    out = net(XY)
    for l in range(net.n_shared + 1):
        assert torch.equal(net.decode_from(net.encode(XY, l), l), out), l
    assert net.encode(XY, 0).shape == ((64, 2) if backbone == 'siren' else (64, 32))
    with pytest.raises(ValueError, match='0..3'): net.encode(XY, 4)
    with pytest.raises(ValueError, match=r'\(\.\.\., 2\)'): net(XY[:, :1])


@pytest.mark.parametrize('backbone', BACKBONES)
def test_decode_from_batched_activations(backbone):
    net = small(backbone)
    h = net.encode(XY, 2)
    hb = torch.stack([h, torch.zeros_like(h), h.flip(0)])  # (B, P, width)
    y = net.decode_from(hb, 2)
    assert y.shape == (3, 3, 64, 2)
    torch.testing.assert_close(y[0], net(XY), atol=1e-6, rtol=0)
    assert net.decode_from(hb, 2, head=1).shape == (3, 64, 2)
    assert net.decode_from(hb, 2, head=[0, 2]).shape == (3, 2, 64, 2)


def test_state_dict_names_and_layer_weights():
    net = small('ffmlp')
    assert sorted(net.state_dict()) == sorted(['B', 'head_w', 'head_b'] + [f'enc_{t}.{i}' for t in 'wb' for i in range(3)])
    assert [tuple(w.shape) for w in net.layer_weights()] == [(32, 32), (32, 32), (32, 32)]
    assert not any(w.requires_grad for w in net.layer_weights())
    assert 'B' not in small('siren').state_dict()


# ---------------------------------------------------------------- stacked INRs

def reference(coh, seed, upto, c=1):
    "A one-signal INR built alone for test seed `seed`, then given the cohort's B and layers 1..`upto`."
    ref = CohortINR(coh.backbone, 1, c, coh.width, coh.n_shared, coh.w0, coh.ff_m, coh.ff_sigma, seed=fit_seed(seed))
    sd = ref.state_dict()
    for k, v in coh.state_dict().items():
        if k == 'B' or (k.startswith('enc') and int(k.split('.')[1]) < upto): sd[k] = v
    ref.load_state_dict(sd)
    return ref


@pytest.mark.parametrize('backbone', BACKBONES)
@pytest.mark.parametrize('mode', TAIL_MODES)
def test_stack_prefix_cached_no_grad_and_exact(backbone, mode):
    coh = small(backbone, seed=9)
    for d in range(coh.n_shared + 1):
        st = StackedINR.from_cohort(coh, d, mode, seeds=[0, 1, 2], out_channels=2)
        pre = st.prefix(XY)
        assert st.prefix(XY) is pre and not pre.requires_grad
        assert torch.equal(pre, coh.encode(XY, d))
        out = st(XY)
        assert out.shape == (3, 64, 2) and torch.equal(st(pre), out) and torch.equal(st.tail(pre), out)
        assert out.requires_grad and len(list(st.parameters())) == 2 * (coh.n_shared - d) + 2
        out.sum().backward()
        assert all(p.grad is not None for p in st.parameters())
        assert not any(b.requires_grad for b in st.buffers())


def test_stack_prefix_recomputed_for_new_or_modified_coords():
    st = StackedINR.from_cohort(small('siren'), 2, 'reinit', seeds=[0])
    a = st.prefix(XY)
    xy2 = XY.clone()
    assert st.prefix(xy2) is not a and torch.equal(st.prefix(xy2), a)
    xy2.mul_(0.5)
    assert not torch.equal(st.prefix(xy2), a)


@pytest.mark.parametrize('backbone', BACKBONES)
def test_transfer_tail_equals_cohort_and_reinit_differs_per_seed(backbone):
    coh = small(backbone)
    tr = StackedINR.from_cohort(coh, 1, 'transfer', seeds=[0, 1])
    for j, l in enumerate(range(1, 3)):
        for m in range(2):
            assert torch.equal(tr.tail_w[j][m], coh.enc_w[l]) and torch.equal(tr.tail_b[j][m], coh.enc_b[l])
    assert not torch.equal(tr.head_w[0], tr.head_w[1])  # heads are fresh per seed
    re = StackedINR.from_cohort(coh, 1, 'reinit', seeds=[0, 1])
    for j in range(2): assert not torch.equal(re.tail_w[j][0], re.tail_w[j][1])
    assert not torch.equal(re.tail_w[0][0], coh.enc_w[1])
    for l in range(1): assert torch.equal(re.pre_w[l], coh.enc_w[l])
    tr.tail_w[0].data.add_(1.)  # training the stack never touches the cohort
    assert not torch.equal(tr.tail_w[0][0], coh.enc_w[1])


@pytest.mark.parametrize('backbone', BACKBONES)
def test_stack_model_equals_separately_built_single(backbone):
    coh = small(backbone, seed=5)
    L, seeds = coh.n_shared, [3, 0, 7]
    for d, mode in canonical_configs(L):
        st = StackedINR.from_cohort(coh, d, mode, seeds=seeds)
        out = st(XY)
        upto = L if st.meta['tail_mode'] == 'transfer' else d
        for m, s in enumerate(seeds):
            ref = reference(coh, s, upto)
            torch.testing.assert_close(out[m], ref(XY)[0], atol=1e-5, rtol=1e-5)
            single = st.single(m)
            for k, v in ref.state_dict().items(): assert torch.equal(single.state_dict()[k], v), (d, mode, k)
            torch.testing.assert_close(single(XY)[0], out[m], atol=1e-5, rtol=1e-5)


def test_scratch_is_a_fresh_single_inr_with_the_cohort_B():
    coh = small('ffmlp', seed=11)
    st = StackedINR.from_cohort(coh, 0, 'scratch', seeds=[2])
    fresh = CohortINR('ffmlp', 1, 1, 32, 3, 30., 16, 1.5, seed=fit_seed(2))
    s = st.single(0)
    assert torch.equal(s.B, coh.B) and not torch.equal(s.B, fresh.B)
    for l in range(3): assert torch.equal(s.enc_w[l], fresh.enc_w[l])
    assert torch.equal(s.head_w, fresh.head_w)
    # finetune: whole encoder transferred, head fresh
    ft = StackedINR.from_cohort(coh, 0, 'finetune', seeds=[2]).single(0)
    for l in range(3): assert torch.equal(ft.enc_w[l], coh.enc_w[l])
    assert torch.equal(ft.head_w, fresh.head_w)


def test_test_seeds_never_redraw_the_cohort_init():
    "Cohort seed 0 and test seed 0 must not give a reinit tail equal to the cohort's initial layers."
    for bb in BACKBONES:
        coh = small(bb, seed=0)
        st = StackedINR.from_cohort(coh, 0, 'scratch', seeds=[0, 1])
        for l in range(3):
            for m in range(2): assert not torch.equal(st.tail_w[l][m], coh.enc_w[l])
        assert st.meta['seeds'] == [0, 1] and st.meta['init_seeds'] == [fit_seed(0), fit_seed(1)]
    assert len({fit_seed(s) for s in range(1000)}) == 1000 and min(fit_seed(s) for s in range(1000)) > 10_000


def test_canonical_configs_deduplicate():
    cfgs = canonical_configs(5)
    assert len(cfgs) == len(set(cfgs)) == 11
    assert cfgs[:2] == [(0, 'scratch'), (0, 'finetune')] and cfgs[-1] == (5, 'transfer')
    assert (0, 'reinit') not in cfgs and (5, 'reinit') not in cfgs
    assert canonical_configs(3, ('transfer',)) == [(0, 'scratch'), (0, 'finetune'), (1, 'transfer'), (2, 'transfer'), (3, 'transfer')]
    coh = small('siren')
    a, b = StackedINR.from_cohort(coh, 3, 'reinit', [1]), StackedINR.from_cohort(coh, 3, 'transfer', [1])
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    with pytest.raises(ValueError, match='depth 0'): StackedINR.from_cohort(coh, 1, 'finetune', [0])
    with pytest.raises(ValueError, match='Unknown mode'): StackedINR.from_cohort(coh, 1, 'frozen', [0])
    with pytest.raises(ValueError, match='0..3'): StackedINR.from_cohort(coh, 4, 'reinit', [0])


# ---------------------------------------------------------------- checkpoints

@pytest.mark.parametrize('backbone', BACKBONES)
def test_checkpoint_round_trip_bit_exact(tmp_path, backbone):
    net = small(backbone, seed=4)
    with torch.no_grad(): net.head_w.add_(0.123)  # not just the init: the stored values come back
    f = save_inr(net, tmp_path / 'c.safetensors', {'config_hash': 'h1', 'cohort': ['digits', 8]})
    back = load_inr(f, expect={'config_hash': 'h1', 'cohort': ('digits', 8), 'n_signals': 3, 'ff_sigma': 1.5})
    a, b = net.state_dict(), back.state_dict()
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert torch.equal(back(XY), net(XY))
    assert (back.backbone, back.width, back.n_shared, back.seed) == (backbone, 32, 3, 4)


def test_checkpoint_expect_mismatch_names_file_keys_and_fix(tmp_path):
    f = save_inr(small('siren'), tmp_path / 'c.safetensors', {'config_hash': 'h1'})
    with pytest.raises(ValueError) as e: load_inr(f, expect={'config_hash': 'h2', 'width': 64, 'n_signals': 3})
    msg = str(e.value)
    assert 'c.safetensors' in msg and "config_hash: stored 'h1' vs expected 'h2'" in msg and 'width: stored 32 vs expected 64' in msg
    assert 'n_signals' not in msg and 'Delete' in msg
    with pytest.raises(ValueError, match="profile: stored '<missing>'"): load_inr(f, expect={'profile': 'cpu'})


def test_checkpoint_bad_files(tmp_path):
    bad = tmp_path / 'broken.safetensors'
    bad.write_bytes(b'not a safetensors file at all')
    with pytest.raises(ValueError, match='broken.safetensors'): load_inr(bad)
    with pytest.raises(FileNotFoundError, match='No artifact'): load_inr(tmp_path / 'none.safetensors')
    from cohort_inrs.store import save_tensors
    other = save_tensors(tmp_path / 'other.safetensors', {'x': torch.zeros(2)}, {'kind': 'sae'})
    with pytest.raises(ValueError, match='not a cohort_inr file'): load_inr(other)
    with pytest.raises(ValueError, match='width'): save_inr(small('siren'), tmp_path / 'x.safetensors', {'width': 8})
    assert not (tmp_path / 'x.safetensors').exists()
