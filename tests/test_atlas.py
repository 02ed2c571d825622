"""The atom atlas: its pages hold the same numbers as the figures' artifacts, its sprites decode to the
firing and change maps, bad arguments get clear errors, its asset files (package data) parse, and the
pages work in a real browser (Debian's Chromium driven headless by Playwright; nothing downloads a browser)."""
import argparse, contextlib, io, json, os, re, shutil, subprocess
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
import numpy as np, pytest, torch
from cohort_inrs.config import get_config
from cohort_inrs.sae import sae_model, sae_reconstruct
from cohort_inrs.fit import to_image
from cohort_inrs.atoms import ablation_scan, firing_maps, firing_pairs, maps_from_pairs, localisation, summarise, contour_tracing, lower_median
from cohort_inrs.atlas import (build_atlases, read_atlas, atlas_data, page_name, compare_name, png_decode, sig, asset)
from cohort_inrs.cli import add_atlas_parser

CHROMIUM = '/usr/bin/chromium'
CHROME_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync']
BIG = 4096  # atoms of the large smoke dictionary: the virtualised grid at the real dictionary size

@contextlib.contextmanager
def _cache(path):
    "Point the artifact cache at `path` for a block (module fixtures run outside the per-test cache fixture)."
    old = os.environ.get('COHORT_INRS_CACHE'); os.environ['COHORT_INRS_CACHE'] = str(path)
    try: yield
    finally:
        if old is None: os.environ.pop('COHORT_INRS_CACHE', None)
        else: os.environ['COHORT_INRS_CACHE'] = old

@pytest.fixture(scope='module')
def built(tmp_path_factory):
    "Smoke atlases at depth 1: both cohorts and backbones (64 atoms), and one 4096-atom digits SIREN page."
    root = tmp_path_factory.mktemp('atlas'); cache = root/'cache'
    with _cache(cache):
        cfg = get_config('smoke')
        small = build_atlases(cfg, depths=[1], out_dir=root/'small', progress=False)
        cfg_big = get_config('smoke', sae=dict(n_atoms=BIG))
        big = build_atlases(cfg_big, cohorts=['digits'], backbones=['siren'], depths=[1], out_dir=root/'big', progress=False)
    return dict(root=root, cache=cache, cfg=cfg, small=small, big=big, cfg_big=cfg_big)

def _tiles(sheet, n, H, W, cols):
    "All tiles of a sprite sheet as `(n, H, W)` (a reshape, no loop)."
    rows = sheet.shape[0] // H
    return sheet.reshape(rows, H, cols, W).transpose(0, 2, 1, 3).reshape(rows * cols, H, W)[:n]

def test_sprite_tiles_are_the_firing_maps(built, monkeypatch):
    monkeypatch.setenv('COHORT_INRS_CACHE', str(built['cache']))
    page = read_atlas(built['small']['out_dir']/page_name('lfw@16', 'ffmlp', 1))
    M, A = page['meta'], page['atoms']; H, W = M['res']
    sae, _, net, coh = sae_model(built['cfg'], 'ffmlp', 'lfw@16', 1, progress=False)
    maps = firing_maps(sae, net, 1, (H, W)).float()
    mx = maps.flatten(1).amax(1)
    T = torch.from_numpy(_tiles(page['sprites']['fire'], M['n_atoms'], H, W, M['sprite_cols']).astype(np.float32)) / 255
    ref = maps / mx.clamp_min(1e-30)[:, None, None]
    assert (T - ref).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit precision
    assert torch.equal(T > 0, maps > 0)  # the support exactly
    np.testing.assert_allclose(A['fmax'], mx.numpy(), rtol=5e-4)  # the scale the tiles are divided by, 4 significant digits
    assert M['n_live'] == int((mx > 0).sum()) and A['live'] == (mx > 0).int().tolist()

def test_drops_are_the_ablation_scans(built, monkeypatch):
    monkeypatch.setenv('COHORT_INRS_CACHE', str(built['cache']))
    for r in built['small']['pages']:
        page = read_atlas(r['path']); M, A = page['meta'], page['atoms']
        scan = ablation_scan(built['cfg'], M['backbone'], M['cohort'], M['depth'], progress=False)
        np.testing.assert_allclose(np.array(A['drop'], float), scan['drop'].double().numpy(), rtol=5e-4, atol=1e-12)
        assert int(np.argmax(A['drop_max'])) == int(scan['drop'].max(1).values.argmax())
        assert max(A['drop_max']) == pytest.approx(scan['drop'].max().item(), rel=5e-4)
        assert A['support'] == scan['support'].tolist()
        assert M['psnr_spliced'] == pytest.approx(scan['psnr_spliced'].tolist(), rel=5e-4)

def test_change_map_tiles_are_the_ablation_change(built, monkeypatch):
    monkeypatch.setenv('COHORT_INRS_CACHE', str(built['cache']))
    page = read_atlas(built['small']['out_dir']/page_name('digits', 'siren', 1))
    M, A = page['meta'], page['atoms']; H, W = M['res']; n = M['n_atoms']
    sae, _, net, coh = sae_model(built['cfg'], 'siren', 'digits', 1, progress=False)
    top = torch.tensor(A['drop_max']).topk(5).indices
    with torch.no_grad():  # the definition: one full-image forward per atom and head
        h = net.encode(coh.coords(), 1); r = sae_reconstruct(sae, h); z = sae.encode(h)
        y0 = to_image(net.decode_from(r, 1)).clamp(0, 1)
        ref = torch.stack([(to_image(net.decode_from(r - z[:, j:j + 1] * sae.W_dec[j], 1)).clamp(0, 1) - y0).abs().mean(-1) for j in top.tolist()])
    for i, hd in enumerate(M['change_heads']):  # a few heads: a readable check
        T = torch.from_numpy(_tiles(page['sprites'][f'chg-{i}'], n, H, W, M['sprite_cols']).astype(np.float32)) / 255
        got = T[top].flatten(1) * torch.tensor([A['cmax'][j] for j in top.tolist()])[:, None]
        tol = torch.tensor([A['cmax'][j] for j in top.tolist()])[:, None] * (0.5 / 255 + 1e-3)
        assert ((got - ref[:, hd]).abs() <= tol + 1e-6).all()

def test_matching_and_pages(built):
    pages = {r['file']: r for r in built['small']['pages']}
    assert sorted(pages) == sorted(page_name(s, b, 1) for s in ('digits', 'lfw@16') for b in ('siren', 'ffmlp'))
    assert sorted(c['file'] for c in built['small']['compares']) == [compare_name('digits', 1), compare_name('lfw@16', 1)]
    d = read_atlas(pages[page_name('digits', 'siren', 1)]['path'])
    assert d['meta']['match']['cohort'] == 'lfw@16' and d['meta']['match']['grid'] == [16, 16]
    m = np.array(d['atoms']['match']); ok = m >= 0
    assert ok.sum() == d['meta']['match']['n_matched'] and len(set(m[ok])) == ok.sum()  # one-to-one
    assert all((c is None) == (i < 0) for c, i in zip(d['atoms']['match_corr'], m))
    index = (built['small']['out_dir']/'index.html').read_text()
    assert all(f'href="{f}"' in index for f in list(pages) + [c['file'] for c in built['small']['compares']])

def test_match_liveness_is_the_matchings(built):
    "Each unmatched atom is either constant on the common grid or a surplus live atom of the larger side (one-to-one matching)."
    seen = set()
    for r in built['small']['pages']:
        A, M = (d := read_atlas(r['path']))['atoms'], d['meta']; mm = M['match']
        m, live = np.array(A['match']), np.array(A['match_live'])
        assert mm['n_live'] == live.sum() and (live[m >= 0] == 1).all()
        assert mm['n_matched'] == (m >= 0).sum() == min(mm['n_live'], mm['n_live_other'])
        if ((m < 0) & (live == 1)).any(): assert mm['n_live_other'] < mm['n_live']; seen.add('surplus')
        if (live == 0).any(): seen.add('constant')
    assert seen == {'surplus', 'constant'}, seen  # the smoke pages have both kinds (the browser test opens them)

def test_page_summary_is_the_figures(built, monkeypatch):
    "The medians on the comparison page and index are the atom_localisation figure's, computed by its own calls."
    monkeypatch.setenv('COHORT_INRS_CACHE', str(built['cache']))
    cfg = built['cfg']
    for r in built['small']['pages']:
        M, A = (d := read_atlas(r['path']))['meta'], d['atoms']; s, b, dp = M['cohort'], M['backbone'], M['depth']
        sae, _, net, coh = sae_model(cfg, b, s, dp, progress=False)  # the figure's loop body, at render = 0
        fp = firing_pairs(sae, net, dp, coh.resolution)
        maps = maps_from_pairs(fp).float().cpu()
        summ = summarise(localisation(maps)); ct = contour_tracing(maps, coh.train, coh.test)
        for k in ('area', 'entropy', 'rg', 'components'): assert M['summary'][k] == sig(summ[k]['median']), (r['file'], k)  # its `loc_rows`
        assert M['summary']['ct_diff'] == sig(lower_median(ct['diff'])), r['file']  # its `ct_rows[...]['diff_median']`: the figure's own `med`
        dm = ablation_scan(cfg, b, s, dp, progress=False)['drop'].double().max(1).values[torch.tensor(A['live']) == 1]
        assert M['summary']['drop_max'] == sig(dm.quantile(.5))  # no figure reports it: interpolated over live atoms

def test_size_budget(built):
    big = built['big']['pages'][0]
    assert big['meta']['n_atoms'] == BIG and big['mb'] < 15
    assert all(r['mb'] < 1 for r in built['small']['pages'])
    assert not built['small']['over_budget'] and not built['big']['over_budget']
    # nothing outside the page is referenced: no URLs, no external scripts or fonts
    text = big['path'].read_text()
    assert 'http://' not in text and 'https://' not in text and '<script src' not in text and '@import' not in text and '@font-face' not in text

def test_bad_arguments(tmp_path):
    cfg = get_config('smoke')
    with pytest.raises(ValueError, match='Unknown backbone'): build_atlases(cfg, backbones=['relu'], out_dir=tmp_path)
    with pytest.raises(ValueError, match=r'Depth 9 is outside 1\.\.3'): build_atlases(cfg, depths=[9], out_dir=tmp_path)
    with pytest.raises(ValueError, match='Unknown backbone'): atlas_data(cfg, 'relu', 'digits', 1)
    with pytest.raises(ValueError, match='n_change_heads'): atlas_data(cfg, 'siren', 'digits', 1, n_change_heads=-1)
    with pytest.raises(Exception, match='nosuchcohort'): build_atlases(cfg, cohorts=['nosuchcohort'], depths=[1], out_dir=tmp_path, progress=False)
    (tmp_path/'x.html').write_text('<html></html>')
    with pytest.raises(ValueError, match='not an atlas page'): read_atlas(tmp_path/'x.html')
    ap = argparse.ArgumentParser(prog='cohort-inrs'); add_atlas_parser(ap.add_subparsers(dest='command'))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit): ap.parse_args(['atlas', '--backbone', 'relu'])
    assert "invalid choice: 'relu'" in err.getvalue()
    args = ap.parse_args(['atlas', '--profile', 'smoke', '--cross-seed', '-1', '--out-dir', str(tmp_path)])
    with pytest.raises(ValueError, match='cross-seed must be >= 0'): args.func(args)

def test_cli_writes_pages(tmp_path):
    ap = argparse.ArgumentParser(prog='cohort-inrs'); add_atlas_parser(ap.add_subparsers(dest='command'))
    args = ap.parse_args(['atlas', '--profile', 'smoke', '--cohort', 'digits', '--backbone', 'ffmlp', '--depth', '2', '--out-dir', str(tmp_path/'a')])
    out = io.StringIO()
    with contextlib.redirect_stdout(out): assert args.func(args) == 0
    assert (tmp_path/'a'/'digits-ffmlp-l2.html').exists() and (tmp_path/'a'/'index.html').exists()
    assert 'digits-ffmlp-l2.html' in out.getvalue() and 'MB' in out.getvalue()

# ---------------------------------------------------------------- the page assets (package data)

ASSETS = ('atlas.css', 'atlas.js', 'atlas.html', 'compare.html', 'index.html')
ROOT = Path(__file__).resolve().parent.parent

def test_assets_are_package_data():
    "Every asset is read through importlib.resources from the installed package, and the wheel ships them."
    static = resources.files('cohort_inrs')/'static'
    assert sorted(p.name for p in static.iterdir() if p.name in ASSETS) == sorted(ASSETS)
    for name in ASSETS: assert asset(name) == (static/name).read_text(encoding='utf-8') and asset(name).strip()
    pyproject = (ROOT/'pyproject.toml').read_text()
    assert re.search(r'^\[tool\.setuptools\.package-data\]\ncohort_inrs = \[[^\]]*"static/\*"', pyproject, re.M), 'pyproject.toml must ship static/*'

def _js_problem(src:str):
    "A structural check of JavaScript without a JS engine: (), [], {} balance, skipping comments, strings and regex literals; the problem or None."
    pairs, stack, i, n, prev, word = {')': '(', ']': '[', '}': '{'}, [], 0, len(src), '', ''
    while i < n:
        c = src[i]
        if c.isspace(): i += 1; continue
        if src.startswith('//', i): j = src.find('\n', i); i = n if j < 0 else j; continue
        if src.startswith('/*', i):
            j = src.find('*/', i + 2)
            if j < 0: return f'unclosed comment at {i}'
            i = j + 2; continue
        if c in '"\'`' or (c == '/' and (prev in '(,=:[!&|?{};+-*%<>~^' or word in ('return', 'typeof', 'case'))):
            j, in_class = i + 1, False  # a string, or a regex literal where a value is expected
            while j < n and (src[j] != c or in_class):
                if src[j] == '\\': j += 1
                elif c == '/' and src[j] in '[]': in_class = src[j] == '['
                elif c != '`' and src[j] == '\n': return f'unterminated literal at {i}: {src[i:i + 40]!r}'
                j += 1
            if j >= n: return f'unterminated literal at {i}'
            i, prev, word = j + 1, 'a', ''; continue
        if c in '([{': stack.append((c, i))
        elif c in ')]}':
            if not stack or stack[-1][0] != pairs[c]: return f'unbalanced {c!r} at {i}: {src[max(0, i - 40):i + 1]!r}'
            stack.pop()
        m = re.match(r'[A-Za-z_$][\w$]*|\d[\w.]*', src[i:])
        if m: word, prev = m.group(0), 'a'; i += len(m.group(0)); continue
        prev, word = c, ''; i += 1
    return f'unclosed {stack[-1][0]!r} at {stack[-1][1]}' if stack else None

def test_js_parses():
    src = asset('atlas.js')
    assert _js_problem(src) is None, _js_problem(src)
    assert _js_problem('if (a) { x = /[)}]/.test(s) / 2; }') is None and _js_problem('f(a, "b)", [1, 2]') is not None
    assert _js_problem('const s = "a" + (b / c); }') is not None
    node = shutil.which('node')
    if node:  # a real parse where Node is installed
        path = resources.files('cohort_inrs')/'static'/'atlas.js'
        with resources.as_file(path) as f: r = subprocess.run([node, '--check', str(f)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr

def test_css_braces_balance():
    css = re.sub(r'/\*.*?\*/', '', asset('atlas.css'), flags=re.S)
    depth = 0
    for c in re.sub(r'"[^"]*"|\'[^\']*\'', '', css):
        depth += (c == '{') - (c == '}'); assert depth >= 0
    assert depth == 0 and css.count('{') > 50

VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr'}

class _Tags(HTMLParser):
    "Checks that every element is closed, in order (void elements excepted)."
    def __init__(self): super().__init__(); self.stack, self.errors = [], []
    def handle_starttag(self, tag, attrs):
        if tag not in VOID: self.stack.append((tag, self.getpos()))
    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1][0] != tag: self.errors.append(f"</{tag}> at {self.getpos()} closes {self.stack[-1] if self.stack else 'nothing'}")
        else: self.stack.pop()

def _tag_errors(text):
    p = _Tags(); p.feed(text); p.close()
    return p.errors + [f'<{t}> at {pos} never closed' for t, pos in p.stack]

def test_html_templates_balance(built):
    heads = []
    for name in ('atlas.html', 'compare.html', 'index.html'):
        t = asset(name)
        assert _tag_errors(t) == [], (name, _tag_errors(t))
        assert t.startswith('<!doctype html>') and '</head><body data-page="' + name.split('.')[0] + '">' in t
        heads.append(t[:t.index('<style>{{CSS}}</style>')])
    assert len(set(heads)) == 1  # the three templates share their head
    assert _tag_errors('<div><p>x</div>') != [] and _tag_errors('<div><img src=x><br></div>') == []
    for r in built['small']['pages'][:1] + built['small']['compares'][:1]:  # the rendered pages too
        assert _tag_errors(r['path'].read_text()) == [], r['file']
    assert _tag_errors((built['small']['out_dir']/'index.html').read_text()) == []

# ---------------------------------------------------------------- the browser test

def _browser():
    "Playwright's sync API and the system Chromium, or a failure that says what to install."
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's chromium package (apt-get install chromium); "
                    "CI installs it in .ci/run.")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.fail("playwright is missing: pip install playwright (the Python package only; never run `playwright install`).")
    return sync_playwright

def _open(browser, path, errors, viewport=(1280, 800)):
    "A new page at `file://path`, with console errors and page errors collected into `errors`."
    page = browser.new_page(viewport={'width': viewport[0], 'height': viewport[1]})
    page.on('console', lambda m: errors.append(f'console {m.type}: {m.text} ({path.name})') if m.type == 'error' else None)
    page.on('pageerror', lambda e: errors.append(f'page error: {e} ({path.name})'))
    page.on('requestfailed', lambda r: errors.append(f'request failed: {r.url[:80]} ({path.name})'))
    page.goto(path.resolve().as_uri()); page.wait_for_selector('#count:not(:empty)' if 'index' not in path.name else 'table.pages')
    return page

def _shot(page, path):
    page.screenshot(path=str(path))
    if os.environ.get('ATLAS_SHOTS'):  # development: copy screenshots somewhere to look at them
        Path(os.environ['ATLAS_SHOTS']).mkdir(parents=True, exist_ok=True); shutil.copy(path, Path(os.environ['ATLAS_SHOTS'])/path.name)

def test_atlas_in_chromium(built, tmp_path):
    sync_playwright = _browser()
    small = built['small']['out_dir']; errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        try:
            # --- a smoke atlas page: tile count, sort by ablation drop, the detail panel
            f = small/page_name('lfw@16', 'ffmlp', 1); data = read_atlas(f); A, M = data['atoms'], data['meta']; n = M['n_atoms']
            page = _open(browser, f, errors)
            c = page.locator('#count')
            assert c.get_attribute('data-shown') == str(n) and c.get_attribute('data-total') == str(n) and c.inner_text() == f'{n} atoms'
            assert page.evaluate('window.ATLAS.atoms.live.length') == n
            page.evaluate("document.querySelector('#grid').scrollTop = 1e9"); page.wait_for_timeout(100)
            assert page.locator(f'.tile[data-pos="{n - 1}"]').count() == 1  # the last tile renders
            page.evaluate("document.querySelector('#grid').scrollTop = 0"); page.wait_for_timeout(100)
            page.select_option('#sort', 'drop_max')
            best = int(np.argmax(np.array([-np.inf if v is None else v for v in A['drop_max']])))
            first = page.locator('.tile[data-pos="0"]')
            assert first.get_attribute('data-atom') == str(best)
            assert page.locator('.tile[data-pos="1"]').get_attribute('data-atom') == str(int(np.argsort(-np.array(A['drop_max']), kind='stable')[1]))
            first.click()
            assert page.inner_text('#detail-atom') == str(best)
            assert float(page.inner_text('#detail-drop')) == A['drop_max'][best]
            for k in ('rg', 'entropy', 'area', 'ct_train', 'support', 'components'):
                shown, want = page.inner_text(f'#v-{k}'), A[k][best]
                assert (shown == '\u2013') if want is None else float(shown) == want, (k, shown, want)
            bars = page.locator('#drops g[data-head]'); assert bars.count() == len(M['heads'])
            vals = page.eval_on_selector_all('#drops g[data-head] text:nth-of-type(2)', 'els => els.map(e => e.textContent)')
            assert [float(t) for t in vals] == A['drop'][best]  # the per-head drops as in the JSON
            assert page.evaluate("document.querySelector('#fire-bg').naturalWidth") == M['res'][1]
            assert f"sp-chg-{M['change_heads'].index(A['drop_head'][best])}" in page.get_attribute('#chg-ov', 'class')  # auto head
            assert page.inner_text('#fire-max') == str(A['fmax'][best])
            nn = page.locator('#nn button'); assert nn.count() == len(A['nn'][best])
            if A['match'][best] >= 0: assert f"#{A['match'][best]}" in page.inner_text('#match')
            else: assert page.get_attribute('#detail-unmatched', 'data-reason') == ('surplus' if A['match_live'][best] else 'constant')
            st = page.inner_text('#detail-status')  # the one line a screen reader announces; the panel itself is not live
            assert st.startswith(f'Atom {best}: largest drop ') and float(st.split('drop ')[1].split(' dB')[0]) == A['drop_max'][best]
            assert st.endswith(f"on head {A['drop_head'][best]}") and page.get_attribute('#detail', 'aria-live') is None
            _shot(page, tmp_path/'atlas_detail.png')
            # an unmatched atom that is live on the common grid: the one-to-one matching left it over, and the page says so with Python's counts
            mm = M['match']; surplus = [j for j in range(n) if A['match'][j] < 0 and A['match_live'][j]]
            assert surplus and mm['n_live_other'] < mm['n_live'], mm
            for j in surplus:
                page.evaluate(f'window.ATLAS.open({j})')
                assert page.get_attribute('#detail-unmatched', 'data-reason') == 'surplus'
                txt = page.inner_text('#match')
                assert 'one-to-one' in txt and f"{mm['n_matched']} of the {mm['n_live']} live atoms" in txt and f"({mm['n_live_other']} against" in txt
                assert 'constant' not in txt and 'dead' not in txt
            _shot(page, tmp_path/'atlas_unmatched.png')
            # keyboard: Right moves focus to the next tile, Enter opens it
            first.focus(); page.keyboard.press('ArrowRight')
            assert page.evaluate('document.activeElement.dataset.pos') == '1'
            page.keyboard.press('Enter')
            assert page.inner_text('#detail-atom') == page.evaluate('document.activeElement.dataset.atom')
            # the image and change map follow the head: the largest drop's head by default, then the one chosen
            page.select_option('#head', '1'); assert 'sp-chg-1' in page.get_attribute('#chg-ov', 'class')
            assert page.evaluate("document.querySelector('#fire-bg').src") == 'data:image/png;base64,' + page.evaluate('JSON.parse(document.querySelector("#atlas-images").textContent).images[1]')
            # filter by range
            page.fill('#filter', '10-19'); assert page.locator('#count').get_attribute('data-shown') == '10'
            assert sorted(int(t.get_attribute('data-atom')) for t in page.locator('.tile').all()) == list(range(10, 20))
            page.fill('#filter', 'abc'); assert page.inner_text('#filter-msg') != ''
            page.close()

            # --- sort order, missing values, live-only filter and a constant atom's match note, on a page with dead atoms
            f = small/page_name('digits', 'ffmlp', 1); data = read_atlas(f); A, M = data['atoms'], data['meta']; n = M['n_atoms']
            page = _open(browser, f, errors)
            key = next(s['key'] for s in M['sorts'] if s['key'] != 'id' and any(v is None for v in A[s['key']]))
            v = np.array([np.nan if x is None else x for x in A[key]]); n_null = int(np.isnan(v).sum())
            def shown():  # pos -> atom of the tiles in the DOM, after scrolling to the end and back (all 64 render)
                page.evaluate("document.querySelector('#grid').scrollTop = 1e9"); page.wait_for_timeout(50)
                pa = dict(page.eval_on_selector_all('#grid .tile', 'els => els.map(e => [+e.dataset.pos, +e.dataset.atom])'))
                page.evaluate("document.querySelector('#grid').scrollTop = 0"); page.wait_for_timeout(50)
                return {**pa, **dict(page.eval_on_selector_all('#grid .tile', 'els => els.map(e => [+e.dataset.pos, +e.dataset.atom])'))}
            page.select_option('#sort', key)
            assert page.get_attribute('#order', 'aria-label') == 'sort order: descending' and page.inner_text('#order') == 'descending'
            pa = shown(); assert pa[0] == int(np.nanargmax(v))
            assert all(np.isnan(v[pa[p]]) for p in range(n - n_null, n)) and not any(np.isnan(v[pa[p]]) for p in range(n - n_null))  # missing last
            page.click('#order')
            assert page.get_attribute('#order', 'aria-label') == 'sort order: ascending' and page.inner_text('#order') == 'ascending'
            pa = shown(); assert pa[0] == int(np.nanargmin(v))  # ascending: the smallest non-missing value first
            assert all(np.isnan(v[pa[p]]) for p in range(n - n_null, n)) and not any(np.isnan(v[pa[p]]) for p in range(n - n_null))  # still last
            vals = [v[pa[p]] for p in range(n - n_null)]; assert vals == sorted(vals)
            assert sum(A['live']) < n; page.check('#live-only')
            assert int(page.locator('#count').get_attribute('data-shown')) == sum(A['live']) and all(A['live'][a] for a in shown().values())
            const = [j for j in range(n) if not A['match_live'][j]]; assert const
            page.evaluate(f'window.ATLAS.open({const[0]})')
            assert page.get_attribute('#detail-unmatched', 'data-reason') == 'constant' and 'constant (dead) on the common' in page.inner_text('#match')
            page.close()

            # --- the 4096-atom page: only a window of tiles exists, the end is reachable by keyboard
            fb = built['big']['pages'][0]['path']; page = _open(browser, fb, errors)
            assert page.locator('#count').get_attribute('data-shown') == str(BIG)
            assert page.evaluate('window.ATLAS.atoms.drop_max.length') == BIG
            in_dom = page.locator('.tile').count(); assert 0 < in_dom < BIG // 4, in_dom  # virtualised
            _shot(page, tmp_path/'atlas_grid.png')
            t0 = page.locator('.tile[data-pos="0"]')
            assert t0.get_attribute('aria-posinset') == '1' and t0.get_attribute('aria-setsize') == str(BIG)
            # focus survives scrolling the focused tile out of view, and the arrow keys carry on from it
            t0.focus(); page.evaluate("document.querySelector('#grid').scrollTop = 1e9"); page.wait_for_timeout(150)
            assert page.locator(f'.tile[data-pos="{BIG - 1}"]').count() == 1  # scrolled to the end
            assert page.evaluate('document.activeElement.dataset.pos') == '0'
            page.keyboard.press('ArrowRight'); assert page.evaluate('document.activeElement.dataset.pos') == '1'
            cols = page.evaluate("[...document.querySelectorAll('#grid .tile')].filter(t => t.style.top === '0px').length")
            page.keyboard.press('ArrowDown'); assert page.evaluate('document.activeElement.dataset.pos') == str(1 + cols)
            assert page.evaluate("(() => { const r = document.activeElement.getBoundingClientRect(), g = document.querySelector('#grid').getBoundingClientRect();"
                                 " return r.top >= g.top && r.bottom <= g.bottom; })()")  # scrolled back to it
            # Shift+Tab leaves the tile for the grid (focus ring on), again out of it; Tab comes back to the current tile
            page.keyboard.press('Shift+Tab'); assert page.evaluate('document.activeElement.id') == 'grid'
            assert page.evaluate("getComputedStyle(document.querySelector('#grid')).outlineStyle") == 'solid'
            page.keyboard.press('Shift+Tab'); assert page.evaluate("document.activeElement.closest('#grid') === null")
            page.keyboard.press('Tab'); assert page.evaluate('document.activeElement.dataset.pos') == str(1 + cols)
            page.keyboard.press('End')
            assert page.evaluate('document.activeElement.dataset.pos') == str(BIG - 1)
            page.keyboard.press('Home'); assert page.evaluate('document.activeElement.dataset.pos') == '0'
            page.close()

            # --- the comparison page and the index
            page = _open(browser, small/compare_name('lfw@16', 1), errors)
            assert page.get_attribute('#filter', 'aria-describedby') == 'filter-msg' and page.get_attribute('#order', 'aria-label') == 'sort order: descending'
            assert page.locator('#grid-0 .tile').count() > 0 and page.locator('#grid-1 .tile').count() > 0
            page.select_option('#sort', 'rg')
            for i, b in enumerate(('siren', 'ffmlp')):
                rg = read_atlas(small/page_name('lfw@16', b, 1))['atoms']['rg']
                want = int(np.argmax(np.array([-np.inf if v is None else v for v in rg])))
                assert page.locator(f'#grid-{i} .tile[data-pos="0"]').get_attribute('data-atom') == str(want)
            _shot(page, tmp_path/'atlas_compare.png'); page.close()
            page = _open(browser, small/'index.html', errors)
            assert page.locator('table.pages tbody tr').count() == 4; _shot(page, tmp_path/'atlas_index.png'); page.close()
        finally: browser.close()
    assert not errors, errors
    assert (tmp_path/'atlas_detail.png').stat().st_size > 10_000
