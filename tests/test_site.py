"""The static site (`cohort_inrs.site`, `tools/site`): the committed `figures/cpu` folder and the notebooks built with Jupyter Book into a
temporary folder, then every page opened in headless Chromium (Debian's /usr/bin/chromium driven by Playwright; nothing downloads a
browser): each page loads without a script error, every image decodes, and no request leaves the machine (any address that is not
a file:// one is aborted and fails the test). The site holds every source it should, its links between pages resolve, and its
search works from disk."""
import re, time
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest
from cohort_inrs.site import build_site, site_pages, remote_refs

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT/'figures'/'cpu'
CHROMIUM = '/usr/bin/chromium'
CHROME_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync']
LOCAL = ('file:', 'data:', 'blob:', 'about:')  # addresses that stay on this machine

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The cpu site, built once for the module; with its build time."
    t0 = time.perf_counter()
    out = build_site('cpu', out=tmp_path_factory.mktemp('site')/'_site', figures_dir=FIGURES, nbs_dir=ROOT/'nbs')
    return dict(out=out, seconds=time.perf_counter() - t0, pages=site_pages(out))

def test_site_holds_every_source(site):
    pages = set(site['pages'])
    want = {'index.html', 'figures/index.html', 'figures/claims.html', 'search.html'}
    want |= {f'{p.stem}.html' for p in (ROOT/'nbs').glob('[0-9][0-9]*_*.ipynb')}  # the library notebooks
    runs = sorted((FIGURES/'notebooks').glob('*.ipynb')) or sorted((ROOT/'nbs'/'figures').glob('*.ipynb'))
    want |= {f'figures/{p.stem}.html' for p in runs}  # the figure notebooks
    want |= {f'figures/tables/{p.stem}.html' for p in FIGURES.glob('*.md') if p.name != 'claims.md'}
    want |= {f'figures/atlas/{p.name}' for p in (FIGURES/'atlas').glob('*.html')}  # copied as they are
    assert want <= pages, sorted(want - pages)
    overview = (site['out']/'figures'/'index.html').read_text()
    for png in FIGURES.glob('*.png'):  # every figure image is shown on the figures page, from a file of the site
        src = re.search(rf'<img[^>]*src="([^"]*{re.escape(png.stem)}[^"]*\.png)"', overview)
        assert src and (site['out']/'figures'/src[1]).is_file(), png.name
    assert 'href="atlas/index.html"' in overview

def test_no_page_names_a_web_address_to_fetch(site):
    bad = {p: r for p in site['pages'] if (r := remote_refs((site['out']/p).read_text(encoding='utf-8', errors='replace')))}
    assert not bad, bad

def test_links_between_pages_resolve(site):
    "Every relative `href` and `src` on the site's own pages (the atlas excluded: it has its own test) names a file of the site."
    out, broken = site['out'], []
    for p in site['pages']:
        if p.startswith('figures/atlas/'): continue
        for u in re.findall(r'<(?:a|img|link|script)\b[^>]*?\b(?:href|src)="([^"#?]+)', (out/p).read_text(encoding='utf-8')):
            if not re.match(r'[a-zA-Z][a-zA-Z0-9+.-]*:|//', u) and not ((out/p).parent/unquote(u)).exists(): broken.append((p, u))
    assert not broken, broken[:20]

def _browser():
    "Playwright's sync API and the system Chromium, or a failure that says what to install."
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's chromium package (apt-get install chromium); CI installs it in .ci/run.")
    try: from playwright.sync_api import sync_playwright
    except ImportError: pytest.fail("playwright is missing: pip install playwright (the Python package only; never run `playwright install`).")
    return sync_playwright

IMAGES = """async () => {
  const imgs = [...document.images].filter(i => i.getAttribute('src'));
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  return imgs.map(i => [i.getAttribute('src').slice(0, 80), i.naturalWidth]);
}"""

class Tab:
    "One Chromium tab that visits pages from disk, aborting and recording every request that would leave the machine."
    def __init__(self, browser):
        self.ctx = browser.new_context(viewport={'width': 1280, 'height': 800})
        self.remote, self.errors, self.now = [], [], None
        self.ctx.route(lambda url: not url.startswith(LOCAL), lambda route: (self.remote.append(f'{route.request.url} ({self.now})'), route.abort()))
        self.page = page = self.ctx.new_page()  # one tab goes through every page (a tab per page is slower)
        page.on('request', lambda r: self.remote.append(f'{r.url} ({self.now})') if not r.url.startswith(LOCAL) else None)
        page.on('console', lambda m: self.errors.append(f'console {m.type}: {m.text} ({self.now})') if m.type == 'error' else None)
        page.on('pageerror', lambda e: self.errors.append(f'page error: {e} ({self.now})'))
        page.on('requestfailed', lambda r: self.errors.append(f'request failed: {r.url[:100]} ({self.now})') if r.url.startswith(LOCAL) else None)

    def visit(self, path:Path, name:str):
        "Open `path`, wait for it and its images; the `(src, naturalWidth)` of each image with a `src`."
        self.now = name
        resp = self.page.goto(path.as_uri(), wait_until='load')
        assert resp is None or resp.ok, name
        assert self.page.title().strip(), f'{name} has no title'
        return self.page.evaluate(IMAGES)

def test_the_guard_sees_a_web_request(tmp_path):
    "A page that fetches from the web is caught (and the request never sent): the check below can fail."
    (tmp_path/'web.html').write_text('<!doctype html><title>web</title><link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/typrose@0.2.2/typrose.css">'
                                     '<img src="http://example.org/x.png"><img src="missing.png">')
    with _browser()() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        try: tab = Tab(browser); imgs = tab.visit(tmp_path/'web.html', 'web.html')
        finally: browser.close()
    assert any('cdn.jsdelivr.net' in u for u in tab.remote) and any('example.org' in u for u in tab.remote), tab.remote
    assert [w for _, w in imgs] == [0, 0] and any('missing.png' in e for e in tab.errors), (imgs, tab.errors)

def test_every_page_in_chromium(site):
    sync_playwright, out, seen = _browser(), site['out'], 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        try:
            tab = Tab(browser)
            for name in site['pages']:
                for src, width in tab.visit(out/name, name): assert width > 0, f'{name}: image {src} did not load'
                seen += 1
            # the search runs from disk: Sphinx's index is a local script
            page = tab.page; tab.now = 'search'; page.goto((out/'search.html').as_uri() + '?q=stable+rank')
            page.wait_for_selector('#search-results ul.search li', timeout=15_000)
            hits = page.eval_on_selector_all('#search-results ul.search li a', 'as => as.map(a => a.getAttribute("href"))')
            assert any(h.startswith(('04_spectra', 'figures/stable_rank')) for h in hits), hits
        finally: browser.close()
    assert not tab.remote, tab.remote[:20]
    assert not tab.errors, tab.errors[:20]
    assert seen == len(site['pages']) >= 40
    print(f"cpu site: {seen} pages built in {site['seconds']:.1f} s")
