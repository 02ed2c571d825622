"Tests of `cohort_inrs.data`: embedded cohorts, user folders and NIfTI volumes, splits (slab + gap for volumes), the grid, test-set novelty, bad input."
import os
import numpy as np
import pytest
import torch
from PIL import Image
import nibabel as nib

from cohort_inrs.config import DataConfig, get_config
from cohort_inrs.data import (Cohort, coord_grid, parse_spec, load_cohort, load_cohorts, cohort_table,
                              split_indices, slab_split, nearest_train_correlation, EMBEDDED)


def _snapshot(root):
    "Every file under `root` with its size and mtime, to prove the loaders wrote nothing."
    return {(d, f, os.stat(os.path.join(d, f)).st_size, os.stat(os.path.join(d, f)).st_mtime_ns)
            for d, _, fs in os.walk(root) for f in fs}


def _png(path, arr):
    "Save `arr` with the mode Pillow infers (uint8 HxWx4 = RGBA, HxWx2 = LA, uint16 = I;16, float32 = F)."
    Image.fromarray(arr).save(path)
    return path


def _vol(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


# ---------------------------------------------------------------- specs and grid

def test_parse_spec():
    assert parse_spec('mni152') == ('mni152', None, None)
    assert parse_spec('lfw@25') == ('lfw', None, 25)
    assert parse_spec('folder:/data/celeba@128') == ('folder', '/data/celeba', 128)
    assert parse_spec('folder:/data/a@b/c') == ('folder', '/data/a@b/c', None)
    assert parse_spec('nifti:/x/y@7') == ('nifti', '/x/y', 7)


@pytest.mark.parametrize('spec', ['celeba', 'lfw2@8', 'zip:/x', 'LFW'])
def test_unknown_cohort(spec):
    with pytest.raises(ValueError, match=r"Unknown cohort.*mni152, mni152cor, lfw, digits.*folder:PATH.*nifti:PATH"):
        parse_spec(spec)
    with pytest.raises(ValueError, match='Unknown cohort'):
        load_cohort(spec)


def test_coord_grid_corners_and_order():
    g = coord_grid(3, 5)
    assert g.shape == (15, 2) and g.dtype == torch.float32
    assert g.min() == 0 and g.max() == 1
    assert g[0].tolist() == [0, 0]       # top-left
    assert g[4].tolist() == [1, 0]       # top-right: x = column, left -> right
    assert g[10].tolist() == [0, 1]      # bottom-left: y = row, top -> bottom
    assert g[14].tolist() == [1, 1]
    # row-major: img.reshape(h*w, C)[i*w + j] is pixel (i, j) at (x_j, y_i)
    xs, ys = torch.linspace(0, 1, 5), torch.linspace(0, 1, 3)
    i, j = 1, 3
    assert torch.allclose(g[i * 5 + j], torch.stack([xs[j], ys[i]]))
    assert coord_grid(4).shape == (16, 2)


# ---------------------------------------------------------------- embedded cohorts

@pytest.mark.parametrize('spec,res', [('mni152@32', 32), ('mni152cor@32', 32), ('lfw@25', 25), ('lfw@16', 16), ('digits@8', 8)])
@pytest.mark.parametrize('channels', [1, 3])
def test_embedded_shapes_and_range(spec, res, channels):
    c = load_cohort(spec, n_train=5, n_test=3, channels=channels)
    assert isinstance(c, Cohort)
    assert c.train.shape == (5, res, res, channels) and c.test.shape == (3, res, res, channels)
    assert c.train.dtype == torch.float32
    for x in (c.train, c.test):
        assert x.min() >= 0 and x.max() <= 1
    assert (c.resolution, c.channels, c.n_train, c.n_test) == (res, channels, 5, 3)
    assert c.targets('train').shape == (5, res * res, channels)
    assert len(c.train_names) == 5 and len(c.test_names) == 3
    if channels == 3 and spec.startswith('mni'):  # colour: three different maps
        assert (c.train[..., 0] - c.train[..., 1]).abs().mean() > 0.05 and (c.train[..., 1] - c.train[..., 2]).abs().mean() > 0.05
    elif channels == 3:  # grey cohorts repeat their channel
        assert torch.equal(c.train[..., 0], c.train[..., 2])


def test_embedded_table():
    t = {r['name']: r for r in cohort_table()}
    assert list(t) == list(EMBEDDED)
    assert t['lfw']['images'] == 100 and t['lfw']['native_size'] == 25
    assert t['digits']['images'] == 1797 and t['digits']['native_size'] == 8
    for m in ('mni152', 'mni152cor'):
        assert t[m]['images'] >= 24 and t[m]['native_size'] >= 128 and t[m]['channels'] == 3
    assert t['lfw']['channels'] == 1 and t['digits']['channels'] == 1
    assert all(r['description'] for r in t.values())


def test_lfw_all_100_faces():
    c = load_cohort('lfw@25', n_train=90, n_test=10)
    assert len(set(c.train_names + c.test_names)) == 100
    with pytest.raises(ValueError, match=r"100 images.*101"):
        load_cohort('lfw@25', n_train=90, n_test=11)


def test_mni152_paper_split_and_upright():
    c = load_cohort('mni152@64', n_train=10, n_test=10)
    assert c.train.shape == (10, 64, 64, 1)
    fg = torch.cat([c.train, c.test])[..., 0].mean(0) > 0.05
    assert fg.any(1).sum() > fg.any(0).sum()  # taller than wide: nose up, not lying on its side


def test_upsample_refused_unless_allowed():
    with pytest.raises(ValueError, match=r"'lfw'.*25x25.*lfw@25.*allow_upsample=True"):
        load_cohort('lfw@32')
    with pytest.raises(ValueError, match=r"'digits'.*8x8"):
        load_cohort('digits', DataConfig(resolution=64))
    assert load_cohort('digits@16', allow_upsample=True).resolution == 16


def test_spec_resolution_wins_and_cfg_default():
    cfg = DataConfig(resolution=8, n_train=2, n_test=1)
    assert load_cohort('lfw', cfg).resolution == 8
    assert load_cohort('lfw@20', cfg).resolution == 20
    assert load_cohort('lfw', cfg, resolution=12).resolution == 12


def test_load_cohorts_smoke_profile():
    cfg = get_config('smoke').data
    cs = load_cohorts(cfg)
    assert [(c.name, c.resolution) for c in cs] == [('digits', 8), ('lfw@16', 16)]
    assert [(c.n_train, c.n_test) for c in cs] == [(cfg.n_train, cfg.n_test)] * 2


def test_bad_config_values():
    with pytest.raises(ValueError, match='channels'):
        load_cohort('lfw@8', channels=2)
    with pytest.raises(ValueError, match='n_trian'):
        load_cohort('lfw@8', n_trian=3)
    with pytest.raises(ValueError, match='n_train'):
        load_cohort('lfw@8', n_train=0)
    with pytest.raises(ValueError, match='split must be'):
        load_cohort('lfw@8', n_train=2, n_test=1).targets('val')


# ---------------------------------------------------------------- split

def test_split_determinism():
    a = load_cohort('lfw@8', n_train=10, n_test=5, split_seed=0)
    b = load_cohort('lfw@8', n_train=10, n_test=5, split_seed=0)
    c = load_cohort('lfw@8', n_train=10, n_test=5, split_seed=1)
    assert a.train_names == b.train_names and a.test_names == b.test_names
    assert torch.equal(a.train, b.train)
    assert a.train_names != c.train_names
    for x in (a, c):
        assert not set(x.train_names) & set(x.test_names)
    tr, te = split_indices(50, 30, 20, seed=3)
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(50))


# ---------------------------------------------------------------- folders of images

@pytest.fixture
def photos(tmp_path):
    d = tmp_path / 'photos'
    d.mkdir()
    rng = np.random.default_rng(0)
    _png(d / 'a_rgb.png', (rng.random((32, 32, 3)) * 255).astype(np.uint8))
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 16:, 3] = 255          # right half opaque red, left half fully transparent
    _png(d / 'b_rgba.png', rgba)
    _png(d / 'c_16bit.png', np.full((32, 32), 16384, np.uint16))
    wide = np.zeros((32, 96), np.uint8)
    wide[:, 32:64] = 255           # white only in the central square
    _png(d / 'd_wide.png', wide)
    la = np.zeros((32, 32, 2), np.uint8)
    la[..., 1] = 0                 # grey + alpha, fully transparent
    _png(d / 'e_la.png', la)
    (d / 'notes.txt').write_text('not an image')
    (d / 'sub').mkdir()
    _png(d / 'sub' / 'ignored.png', np.zeros((32, 32), np.uint8))
    return d


def _by_name(c):
    imgs = torch.cat([c.train, c.test])
    return dict(zip(c.train_names + c.test_names, imgs))


def test_folder_loader(photos):
    before = _snapshot(photos.parent)
    c = load_cohort(f'folder:{photos}@16', n_train=3, n_test=2, channels=3)
    assert _snapshot(photos.parent) == before  # read only
    assert c.source == str(photos)
    im = _by_name(c)
    assert sorted(im) == ['a_rgb.png', 'b_rgba.png', 'c_16bit.png', 'd_wide.png', 'e_la.png']
    assert all(x.shape == (16, 16, 3) and x.min() >= 0 and x.max() <= 1 for x in im.values())
    rgba = im['b_rgba.png']
    assert torch.allclose(rgba[:, 0], torch.ones(16, 3))                            # transparent -> white
    assert torch.allclose(rgba[:, -1], torch.tensor([1., 0, 0]).expand(16, 3))      # opaque red stays red
    assert torch.allclose(im['c_16bit.png'], torch.tensor(16384 / 65535))            # 16-bit / 65535
    assert torch.allclose(im['d_wide.png'], torch.tensor(1.))                        # centre crop of the wide one
    assert torch.allclose(im['e_la.png'], torch.tensor(1.))                          # LA composited on white


def test_folder_grey_and_rgb_conversion(tmp_path):
    d = tmp_path / 'rgb'
    d.mkdir()
    col = np.zeros((8, 8, 3), np.uint8)
    col[..., 1] = 255             # pure green
    _png(d / 'green.png', col)
    _png(d / 'grey.png', np.full((8, 8), 51, np.uint8))
    g = _by_name(load_cohort(f'folder:{d}@8', n_train=1, n_test=1, channels=1))
    assert g['green.png'].shape == (8, 8, 1)
    assert torch.allclose(g['green.png'], torch.tensor(0.587), atol=1e-6)   # luminance
    assert torch.allclose(g['grey.png'], torch.tensor(0.2), atol=1e-6)
    r = _by_name(load_cohort(f'folder:{d}@8', n_train=1, n_test=1, channels=3))
    assert torch.allclose(r['green.png'][0, 0], torch.tensor([0., 1, 0]))
    assert torch.allclose(r['grey.png'], torch.tensor(0.2), atol=1e-6)        # grey repeated


def test_folder_palette_and_jpeg(tmp_path):
    d = tmp_path / 'mixed'
    d.mkdir()
    p = Image.new('P', (10, 10))
    p.putpalette([0, 0, 255] + [0] * 765)
    p.save(d / 'pal.png')
    Image.fromarray(np.full((12, 12, 3), 128, np.uint8)).save(d / 'x.JPG')
    im = _by_name(load_cohort(f'folder:{d}@10', n_train=2, n_test=0, channels=3))
    assert torch.allclose(im['pal.png'][0, 0], torch.tensor([0., 0, 1]))
    assert abs(im['x.JPG'].mean().item() - 128 / 255) < 0.02


def test_folder_bad_inputs(tmp_path, photos):
    with pytest.raises(FileNotFoundError, match='missing_dir'):
        load_cohort(f'folder:{tmp_path}/missing_dir')
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'readme.txt').write_text('x')
    with pytest.raises(ValueError, match=r'No supported images in .*empty'):
        load_cohort(f'folder:{empty}')
    with pytest.raises(ValueError, match=r"has 5 images.*2 \+ 4 = 6"):
        load_cohort(f'folder:{photos}@16', n_train=2, n_test=4)
    with pytest.raises(ValueError, match=r'smaller than the requested resolution 64.*allow_upsample=True'):
        load_cohort(f'folder:{photos}@64', n_train=2, n_test=1)
    assert load_cohort(f'folder:{photos}@64', n_train=2, n_test=1, allow_upsample=True).resolution == 64
    bad = tmp_path / 'bad'
    bad.mkdir()
    _png(bad / 'ok.png', np.zeros((8, 8), np.uint8))
    (bad / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    with pytest.raises(ValueError, match=r'Cannot read image .*broken\.png'):
        load_cohort(f'folder:{bad}@8', n_train=1, n_test=1)
    trunc = tmp_path / 'trunc'
    trunc.mkdir()
    _png(trunc / 'full.png', (np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8))
    (trunc / 'half.png').write_bytes((trunc / 'full.png').read_bytes()[:200])
    with pytest.raises(ValueError, match=r'half\.png'):
        load_cohort(f'folder:{trunc}@8', n_train=1, n_test=1)
    nan = tmp_path / 'nan'
    nan.mkdir()
    Image.fromarray(np.full((8, 8), np.nan, np.float32)).save(nan / 'nan.tif')
    with pytest.raises(ValueError, match=r'nan\.tif.*NaN'):
        load_cohort(f'folder:{nan}@8', n_train=1, n_test=0)
    Image.fromarray(np.full((8, 8), 7.0, np.float32)).save(nan / 'nan.tif')
    with pytest.raises(ValueError, match=r'nan\.tif.*outside \[0, 1\]'):
        load_cohort(f'folder:{nan}@8', n_train=1, n_test=0)
    with pytest.raises(ValueError, match='not a folder'):
        load_cohort(f'folder:{bad}/ok.png')


# ---------------------------------------------------------------- NIfTI volumes

def test_nifti_loader_normalisation_and_axis(tmp_path):
    d = tmp_path / 'vols'
    d.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        v = (rng.random((20, 24, 16)) * 1000 + 5000 * k).astype(np.float32)   # arbitrary scales
        v[0, 0, 0] = 1e6                                                         # one outlier voxel
        _vol(d / f'sub{k}.nii.gz', v)
    _vol(d / 'sub3.nii', rng.random((20, 24, 16)).astype(np.float32))
    before = _snapshot(tmp_path)
    c = load_cohort(f'nifti:{d}@16', n_train=3, n_test=1)
    assert _snapshot(tmp_path) == before
    assert c.train.shape == (3, 16, 16, 1)
    all_ = torch.cat([c.train, c.test])
    assert all_.min() >= 0 and all_.max() <= 1 and all_.std() > 0.1   # the outlier did not squash the contrast
    assert sorted(c.train_names + c.test_names) == ['sub0.nii.gz:z=8', 'sub1.nii.gz:z=8', 'sub2.nii.gz:z=8', 'sub3.nii:z=8']
    c3 = load_cohort(f'nifti:{d}@16', n_train=8, n_test=4, slices=3, slice_step=2)
    assert len(set(c3.train_names + c3.test_names)) == 12
    assert {n.split(':')[1] for n in c3.train_names + c3.test_names} <= {'z=6', 'z=8', 'z=10'}


def test_nifti_axis_respected(tmp_path):
    # intensity grows along axis 0 (x, left -> right) only
    v = np.broadcast_to(np.arange(12, dtype=np.float32)[:, None, None], (12, 12, 12)).copy() + 1
    f = _vol(tmp_path / 'ramp.nii.gz', v)
    ax = load_cohort(f'nifti:{f}@12', n_train=1, n_test=0, slice_axis=2)    # axial: x runs along columns
    img = ax.train[0, ..., 0]
    assert ax.train_names == ['ramp.nii.gz:z=+6mm:k=6']
    assert (img[:, 1:] >= img[:, :-1]).all() and img[:, -1].mean() > img[:, 0].mean() + 0.5
    assert torch.allclose(img[0], img[-1])                             # constant down the columns
    sag = load_cohort(f'nifti:{f}@12', n_train=1, n_test=0, slice_axis=0)   # sagittal: one x, a constant image
    assert sag.train_names == ['ramp.nii.gz:x=+6mm:i=6']
    assert sag.train[0].std() < 1e-6
    cor = load_cohort(f'nifti:{f}@12', n_train=1, n_test=0, slice_axis=1)   # coronal: x along columns again
    assert cor.train_names == ['ramp.nii.gz:y=+6mm:j=6']
    assert cor.train[0, 0, -1, 0] > cor.train[0, 0, 0, 0]


def test_nifti_nonsquare_kept_whole(tmp_path):
    v = np.zeros((30, 40, 5), np.float32)
    v[5:25, 2:38, :] = 1.0              # a 20 x 36 "brain", taller (y) than wide (x)
    f = _vol(tmp_path / 'oval.nii.gz', v)
    img = load_cohort(f'nifti:{f}@40', n_train=1, n_test=0).train[0, ..., 0]
    assert img.shape == (40, 40)
    assert (img[0] == 0).all() and (img[-1] == 0).all()   # margin: nothing cut at top or bottom
    assert (img > 0.5).any(1).sum() == 36 and (img > 0.5).any(0).sum() == 20


def test_nifti_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match='no_such'):
        load_cohort(f'nifti:{tmp_path}/no_such')
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ValueError, match=r'No NIfTI volumes.*empty'):
        load_cohort(f'nifti:{empty}')
    d2 = tmp_path / 'flat'
    d2.mkdir()
    _vol(d2 / 'flat.nii.gz', np.ones((8, 8), np.float32))
    with pytest.raises(ValueError, match=r'flat\.nii\.gz has shape \(8, 8\), not 3D'):
        load_cohort(f'nifti:{d2}@8', n_train=1, n_test=0)
    d4 = tmp_path / 'four'
    d4.mkdir()
    _vol(d4 / 'fmri.nii.gz', np.ones((8, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r'fmri\.nii\.gz has shape \(8, 8, 8, 3\), not 3D'):
        load_cohort(f'nifti:{d4}@8', n_train=1, n_test=0)
    dn = tmp_path / 'nan'
    dn.mkdir()
    v = np.ones((8, 8, 8), np.float32)
    v[1, 2, 3] = np.nan
    v[2, 2, 2] = np.inf
    _vol(dn / 'holes.nii.gz', v)
    with pytest.raises(ValueError, match=r'holes\.nii\.gz contains 2 NaN or inf'):
        load_cohort(f'nifti:{dn}@8', n_train=1, n_test=0)
    dc = tmp_path / 'corrupt'
    dc.mkdir()
    (dc / 'junk.nii.gz').write_bytes(b'not gzip at all')
    with pytest.raises(ValueError, match=r'Cannot read NIfTI volume .*junk\.nii\.gz'):
        load_cohort(f'nifti:{dc}@8', n_train=1, n_test=0)
    ds = tmp_path / 'small'
    ds.mkdir()
    _vol(ds / 's.nii.gz', np.random.default_rng(0).random((8, 8, 4)).astype(np.float32))
    with pytest.raises(ValueError, match=r's\.nii\.gz.*foreground slices 0\.\.3 \(4 slices of 1 mm\).*needs 9 slices.*test_gap_mm'):
        load_cohort(f'nifti:{ds}@8', n_train=1, n_test=1)
    with pytest.raises(ValueError, match=r's\.nii\.gz is a single volume.*data\.n_train'):
        load_cohort(f'nifti:{ds}@8', n_train=1, n_test=0, slices=5)
    d2v = tmp_path / 'two'
    d2v.mkdir()
    for k in range(2): _vol(d2v / f'{k}.nii.gz', np.random.default_rng(k).random((8, 8, 4)).astype(np.float32))
    with pytest.raises(ValueError, match=r'has 2 images.*2 \+ 1 = 3'):   # several volumes: one image each, as before
        load_cohort(f'nifti:{d2v}@8', n_train=2, n_test=1)
    with pytest.raises(ValueError, match=r'two/0\.nii\.gz.*4 slices.*fewer slices'):
        load_cohort(f'nifti:{d2v}@8', n_train=1, n_test=1, slices=5)
    with pytest.raises(ValueError, match=r's\.nii\.gz.*smaller than the requested resolution 32.*allow_upsample=True'):
        load_cohort(f'nifti:{ds}@32', n_train=1, n_test=0)
    with pytest.raises(ValueError, match='slice_axis must be 0 .sagittal.'):
        load_cohort(f'nifti:{ds}@8', n_train=1, n_test=0, slice_axis=3)
    with pytest.raises(ValueError, match='slice_step must be >= 1'):
        load_cohort(f'nifti:{ds}@8', n_train=1, n_test=0, slice_step=0)


# ---------------------------------------------------------------- colour MNI cohorts

def _mni_map(which):
    import importlib.resources
    f = importlib.resources.files('nilearn') / 'datasets' / 'data' / f'mni_icbm152_{which}_tal_nlin_sym_09a_converted.nii.gz'
    return np.asarray(nib.load(str(f)).dataobj, np.float32)


def _mm(name):
    "World position in mm from an image name like `mni152:z=+12mm:k=84`."
    return float(name.split('=')[1].split('mm')[0])


def _index(name):
    return int(name.rsplit('=', 1)[1])


def _offset(img_mask, slice_mask):
    "Where the image sits in the slice: the shift between the two masks' bounding boxes (rows, cols)."
    first = lambda m, ax: np.nonzero(m.any(ax))[0][0]
    return first(slice_mask, 1) - first(img_mask, 1), first(slice_mask, 0) - first(img_mask, 0)


@pytest.mark.parametrize('cohort,axis', [('mni152', 2), ('mni152cor', 1)])
def test_mni_colour_channels_are_the_maps(cohort, axis):
    gm, wm = _mni_map('gm') / 255, _mni_map('wm') / 255     # nilearn stores them as 8-bit 0..255
    native = {r['name']: r['native_size'] for r in cohort_table()}[cohort]
    c = load_cohort(f'{cohort}@{native}', n_train=10, n_test=4, channels=3)   # native: no resampling
    assert c.channels == 3 and c.resolution == native
    for img, name in [(c.train[0], c.train_names[0]), (c.test[-1], c.test_names[-1])]:
        img, k = img.numpy(), _index(name)
        g_sl, b_sl = (np.rot90(np.take(m, k, axis=axis)) for m in (gm, wm))   # upright, as the loader shows it
        r0, c0 = _offset(img[..., 1] > 0.5, g_sl > 0.5)
        side = img.shape[0]
        np.testing.assert_allclose(img[..., 1], g_sl[r0:r0 + side, c0:c0 + side], atol=1e-6)   # G = grey matter
        np.testing.assert_allclose(img[..., 2], b_sl[r0:r0 + side, c0:c0 + side], atol=1e-6)   # B = white matter
        assert img[..., 1].max() > 0.9 and img[..., 2].max() > 0.9 and (img[..., 1] > 0.5).mean() > 0.05   # real tissue, not zeros
        assert abs(img[..., 1].sum() - g_sl.sum()) < 1e-3 * g_sl.sum()       # and none of it cropped away


def test_mni_channels_1_is_the_t1():
    for cohort in ('mni152@48', 'mni152cor@48'):
        rgb = load_cohort(cohort, n_train=10, n_test=4, channels=3)
        grey = load_cohort(cohort, n_train=10, n_test=4, channels=1)
        assert grey.channels == 1 and grey.train_names == rgb.train_names
        assert torch.allclose(grey.train, rgb.train[..., :1], atol=1e-6)     # the T1 channel itself ...
        assert torch.allclose(grey.test, rgb.test[..., :1], atol=1e-6)
        lum = rgb.train @ torch.tensor([0.299, 0.587, 0.114])
        assert (grey.train[..., 0] - lum).abs().mean() > 0.05                # ... not a luminance mix


@pytest.mark.parametrize('cohort', ['mni152@48', 'mni152cor@48'])
@pytest.mark.parametrize('n_train,n_test,step,gap', [(10, 4, 2, 8.0), (10, 10, 2, 8.0), (6, 3, 3, 12.0), (5, 2, 1, 0.0)])
def test_mni_slab_split_gap(cohort, n_train, n_test, step, gap):
    c = load_cohort(cohort, n_train=n_train, n_test=n_test, slice_step=step, test_gap_mm=gap, channels=3)
    tr, te = [_mm(n) for n in c.train_names], [_mm(n) for n in c.test_names]
    assert (len(tr), len(te)) == (n_train, n_test) and len(set(tr + te)) == n_train + n_test
    assert np.allclose(np.diff(tr), step) and np.allclose(np.diff(te), step)   # contiguous, evenly spaced blocks
    assert te[0] - tr[-1] >= max(gap, step) - 1e-6                              # the gap, in mm (1 mm voxels)
    assert min(te) > max(tr)                                                    # no test slice between train slices
    assert c.train_names == load_cohort(cohort, n_train=n_train, n_test=n_test, slice_step=step,   # deterministic,
                                        test_gap_mm=gap, split_seed=7).train_names                 # no seed
    img = torch.cat([c.train, c.test])[..., 0]
    assert ((img > 0.05).float().mean((1, 2)) > 0.3).all()                      # every slice is mostly brain


def test_cpu_profile_sizes_load():
    from cohort_inrs.config import DataConfig
    cfg = DataConfig(cohorts=('mni152@48', 'mni152cor@48'), channels=3, n_train=10, n_test=4)
    a, b = load_cohorts(cfg)
    for c in (a, b):
        assert c.train.shape == (10, 48, 48, 3) and c.test.shape == (4, 48, 48, 3)
    assert a.train_names[0].startswith('mni152:z=') and b.train_names[0].startswith('mni152cor:y=')
    assert not torch.allclose(a.train, b.train)


def test_mni_too_many_slices_says_what_fits():
    with pytest.raises(ValueError, match=r"'mni152@48'.*foreground slices 0\.\.154.*needs 185 slices\. What fits: n_train <= 65 with n_test = 10"):
        load_cohort('mni152@48', n_train=80, n_test=10)
    assert load_cohort('mni152@48', n_train=65, n_test=10).n_train == 65    # what it said fits, fits
    with pytest.raises(ValueError, match='What fits'):
        load_cohort('mni152@48', n_train=66, n_test=10)


# ---------------------------------------------------------------- one volume as a slab cohort

def _head(shape=(40, 44, 36)):
    "An ellipsoid 'head' with a different texture on every slice of every axis."
    g = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing='ij')
    inside = sum(x ** 2 for x in g) < 0.9
    rng = np.random.default_rng(0)
    return (inside * (1 + rng.random(shape))).astype(np.float32)


def test_single_volume_is_a_slab_cohort(tmp_path):
    f = _vol(tmp_path / 'sub01.nii.gz', _head(), np.diag([1., 1., 2.5, 1.]))   # 2.5 mm axial slices
    c = load_cohort(f'nifti:{f}@16', n_train=5, n_test=3, slice_step=1)
    assert c.train.shape == (5, 16, 16, 1) and c.test.shape == (3, 16, 16, 1)
    assert c.source == str(f.resolve())
    ks = [_index(n) for n in c.train_names + c.test_names]
    assert all(n.startswith('sub01.nii.gz:z=') for n in c.train_names)
    assert np.diff(ks[:5]).tolist() == [1] * 4 and np.diff(ks[5:]).tolist() == [1] * 2
    assert ks[5] - ks[4] == 4                                   # ceil(8 mm / 2.5 mm) = 4 voxels = 10 mm
    assert _mm(c.test_names[0]) - _mm(c.train_names[-1]) == 10.0
    # a folder holding exactly one volume is the same cohort
    d = tmp_path / 'one'
    d.mkdir()
    _vol(d / 'sub01.nii.gz', _head(), np.diag([1., 1., 2.5, 1.]))
    c1 = load_cohort(f'nifti:{d}@16', n_train=5, n_test=3, slice_step=1)
    assert c1.train_names == c.train_names and torch.equal(c1.test, c.test)


@pytest.mark.parametrize('axis,letter,n_slices', [(0, 'x', 40), (1, 'y', 44), (2, 'z', 36)])
def test_single_volume_along_slice_axis(tmp_path, axis, letter, n_slices):
    f = _vol(tmp_path / 'head.nii', _head())
    cfg = DataConfig(slice_axis=axis, n_train=6, n_test=2, resolution=16)   # as `--set data.slice_axis=...` gives it
    c = load_cohort(f'nifti:{f}', cfg)
    assert (c.n_train, c.n_test, c.resolution) == (6, 2, 16)
    names = c.train_names + c.test_names
    assert all(n.split(':')[1].startswith(f'{letter}=') for n in names)
    idx = [_index(n) for n in names]
    assert all(0 <= i < n_slices for i in idx) and idx[6] - idx[5] >= 8
    assert min(idx[6:]) > max(idx[:6])


def test_single_volume_too_short(tmp_path):
    f = _vol(tmp_path / 'thin.nii.gz', _head((40, 44, 20)))
    with pytest.raises(ValueError, match=r"thin\.nii\.gz.*axial.*too few for n_train = 10 and n_test = 4.*"
                                         r"needs 33 slices\. What fits: n_train <= \d+ with n_test = 4"):
        load_cohort(f'nifti:{f}@16', n_train=10, n_test=4)
    assert load_cohort(f'nifti:{f}@16', n_train=3, n_test=2).n_test == 2   # a smaller cohort fits


# ---------------------------------------------------------------- test-set novelty

def test_nearest_train_correlation_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    tr = torch.rand(6, 5, 5, 3, generator=g)
    te = torch.cat([torch.rand(3, 5, 5, 3, generator=g), tr[4:5].clone()])
    c = Cohort('toy', 'random', tr, te, [f'tr{i}' for i in range(6)], [f'te{i}' for i in range(4)])
    got = nearest_train_correlation(c)
    for t, row in zip(te, got):
        rs = [np.corrcoef(t.reshape(-1).numpy(), u.reshape(-1).numpy())[0, 1] for u in tr]
        j = int(np.argmax(rs))
        assert row['train_index'] == j and row['train_name'] == f'tr{j}'
        assert abs(row['r'] - rs[j]) < 1e-6
    assert got[3]['train_index'] == 4 and abs(got[3]['r'] - 1) < 1e-9   # a duplicate of a train image: r = 1
    assert [r['test'] for r in got] == ['te0', 'te1', 'te2', 'te3']


def test_mni_test_slices_are_novel():
    for cohort in ('mni152@48', 'mni152cor@48'):
        c = load_cohort(cohort, n_train=10, n_test=4, channels=3)
        rows = nearest_train_correlation(c)
        assert len(rows) == 4 and all(r['train_name'] == c.train_names[-1] for r in rows)   # nearest = the slab's edge
        assert max(r['r'] for r in rows) < 0.9
        rs = [r['r'] for r in rows]
        assert rs == sorted(rs, reverse=True)                                                # farther = less alike


def test_folder_names_broken_links_and_too_large_images(tmp_path, monkeypatch):
    "A link that points nowhere is named, never skipped; Pillow's too-large guard becomes a clear error naming the file."
    from PIL import Image
    d = tmp_path/'imgs'; d.mkdir()
    for i in range(3): Image.fromarray((np.random.default_rng(i).random((20, 20)) * 255).astype(np.uint8)).save(d/f'a{i}.png')
    (d/'gone.png').symlink_to(tmp_path/'missing.png')
    with pytest.raises(ValueError, match=r'gone\.png.*link to a missing file'):
        load_cohort(f'folder:{d}@16', n_train=2, n_test=1)
    (d/'gone.png').unlink()
    assert load_cohort(f'folder:{d}@16', n_train=2, n_test=1).n_train == 2
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)  # 20x20 = 400 pixels: over twice the limit raises in Pillow
    with pytest.raises(ValueError, match=r'a\d\.png.*too large.*MAX_IMAGE_PIXELS'):
        load_cohort(f'folder:{d}@16', n_train=2, n_test=1)
