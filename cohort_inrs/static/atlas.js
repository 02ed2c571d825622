'use strict';
const GAP = 6, CAP = 28, PAD = 8, TILE = 64;  // gap between tiles, caption height, grid margin, target tile size (px)
const $ = (s, r) => (r || document).querySelector(s);
const fmt = v => (v === null || v === undefined) ? '\u2013' : String(v);
const esc = s => String(s).replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));

function parseFilter(text) {  // '' -> all; '42'; '100-199'; '3, 7, 20-30'. null when invalid
  const t = text.trim().replace(/\s*[-\u2013:]\s*/g, '-'); if (!t) return () => true;
  const tests = [];
  for (const p of t.split(/[\s,]+/).filter(Boolean)) {
    let m;
    if ((m = p.match(/^#?(\d+)$/))) { const a = +m[1]; tests.push(j => j === a); }
    else if ((m = p.match(/^#?(\d+)-#?(\d+)$/))) { const a = Math.min(+m[1], +m[2]), b = Math.max(+m[1], +m[2]); tests.push(j => j >= a && j <= b); }
    else return null;
  }
  return j => tests.some(f => f(j));
}

function sortOrder(A, n, key, desc, keep) {  // atom ids kept by `keep`, sorted by A[key]; nulls last, ties by id
  const ids = []; for (let j = 0; j < n; j++) if (keep(j)) ids.push(j);
  if (key === 'id') return desc ? ids.reverse() : ids;
  const v = A[key], s = desc ? -1 : 1;
  ids.sort((a, b) => { const x = v[a], y = v[b];
    if (x === null) return y === null ? a - b : 1; if (y === null) return -1;
    return x === y ? a - b : (x < y ? -s : s); });
  return ids;
}

function placeTile(el, j, cols, w, h, scale) {  // show atom j's tile of a sprite sheet, scaled
  const c = j % cols, r = Math.floor(j / cols);
  el.style.width = (w * scale) + 'px'; el.style.height = (h * scale) + 'px';
  el.style.backgroundSize = (cols * w * scale) + 'px auto';
  el.style.backgroundPosition = (-c * w * scale) + 'px ' + (-r * h * scale) + 'px';
}

class Grid {  // a virtualised, keyboard-navigable grid of sprite tiles
  constructor(el, o) {  // o: {cols, w, h, scale, sprite (class), label(j), onOpen(j)}
    this.el = el; this.inner = $('.grid-inner', el); this.o = o; this.order = []; this.pool = new Map(); this.free = [];
    this.cur = 0; this.sel = -1; this.cols = 1; this.tw = o.w * o.scale; this.step = this.tw + 4 + GAP; this.rowH = o.h * o.scale + 4 + CAP + GAP;
    el.addEventListener('scroll', () => this.render(), {passive: true});
    el.addEventListener('keydown', e => this.key(e));
    el.addEventListener('click', e => { const t = e.target.closest('.tile'); if (!t) return; this.focus(+t.dataset.pos); o.onOpen(+t.dataset.atom); });
    el.addEventListener('focus', e => { if (e.target === el && this.order.length && !el.contains(e.relatedTarget)) this.focus(this.cur); });  // from outside: to the current tile; Shift+Tab from a tile stops on the grid
    el.addEventListener('focusin', e => { const t = e.target.closest ? e.target.closest('.tile') : null; if (t && +t.dataset.pos !== this.cur) this.setCur(+t.dataset.pos); });  // a tile focused any way becomes current
    if (window.ResizeObserver) new ResizeObserver(() => this.layout()).observe(el); else addEventListener('resize', () => this.layout());
  }
  setOrder(order) { this.order = order; this.cur = 0; this.el.scrollTop = 0; this.clear(); this.layout(); }
  relabel() { this.clear(); this.render(); }
  clear() {
    this.refocus = this.refocus || this.inner.contains(document.activeElement);  // the focused tile goes: focus the current one after the next render
    for (const t of this.pool.values()) { t.remove(); this.free.push(t); } this.pool.clear();
  }
  setCur(p) { const old = this.pool.get(this.cur); if (old) old.tabIndex = -1; this.cur = p; const t = this.pool.get(p); if (t) t.tabIndex = 0; }
  layout() {
    const cols = Math.max(1, Math.floor((this.el.clientWidth - 2 * 16 + GAP) / this.step));
    if (cols !== this.cols) { this.cols = cols; this.clear(); }
    this.inner.style.height = Math.ceil(this.order.length / cols) * this.rowH + 'px'; this.render();
  }
  render() {
    const st = this.el.scrollTop - PAD, n = this.order.length, c = this.cols;
    const first = Math.max(0, Math.floor(st / this.rowH) - 2) * c;
    const last = Math.min(n, (Math.ceil((st + this.el.clientHeight) / this.rowH) + 2) * c);
    const cur = this.cur < n ? this.cur : -1;  // the current (focusable, perhaps focused) tile is never recycled, in view or not
    for (const [p, t] of this.pool) if ((p < first || p >= last) && p !== cur) { t.remove(); this.pool.delete(p); this.free.push(t); }
    const frag = document.createDocumentFragment(), add = p => { const t = this.free.pop() || this.make(); this.fill(t, p); this.pool.set(p, t); frag.appendChild(t); };
    for (let p = first; p < last; p++) if (!this.pool.has(p)) add(p);
    if (cur >= 0 && !this.pool.has(cur)) add(cur);
    this.inner.appendChild(frag);
    if (this.refocus) { this.refocus = false; const t = this.pool.get(cur); if (t) t.focus({preventScroll: true}); }
  }
  make() {
    const t = document.createElement('div'); t.className = 'tile'; t.setAttribute('role', 'option');
    const im = document.createElement('div'); im.className = 'im ' + this.o.sprite;
    const cap = document.createElement('div'); cap.className = 'cap'; cap.innerHTML = '<span class="i"></span><span class="v"></span>';
    t.append(im, cap); t.style.width = this.tw + 4 + 'px'; return t;
  }
  fill(t, p) {
    const j = this.order[p], o = this.o, lab = o.label(j);
    t.dataset.atom = j; t.dataset.pos = p; t.tabIndex = p === this.cur ? 0 : -1;
    t.setAttribute('aria-setsize', this.order.length); t.setAttribute('aria-posinset', p + 1);
    t.style.left = (p % this.cols) * this.step + 'px'; t.style.top = Math.floor(p / this.cols) * this.rowH + 'px';
    placeTile(t.firstChild, j, o.cols, o.w, o.h, o.scale);
    t.lastChild.firstChild.textContent = '#' + j; t.lastChild.lastChild.textContent = lab;
    t.setAttribute('aria-label', 'atom ' + j + ', ' + o.labelName() + ' ' + lab);
    t.setAttribute('aria-selected', j === this.sel ? 'true' : 'false'); t.classList.toggle('sel', j === this.sel);
  }
  select(j) { this.sel = j; for (const t of this.pool.values()) { const on = +t.dataset.atom === j; t.classList.toggle('sel', on); t.setAttribute('aria-selected', on ? 'true' : 'false'); } }
  ensure(p) {
    const top = Math.floor(p / this.cols) * this.rowH + PAD, el = this.el;
    if (top < el.scrollTop) el.scrollTop = top - PAD;
    else if (top + this.rowH > el.scrollTop + el.clientHeight) el.scrollTop = top + this.rowH - el.clientHeight + PAD;
  }
  focus(p) {
    const n = this.order.length; if (!n) return;
    p = Math.max(0, Math.min(n - 1, p));
    this.setCur(p); this.ensure(p); this.render();
    const t = this.pool.get(p); if (t) { t.tabIndex = 0; t.focus({preventScroll: true}); }
  }
  reveal(j) { const p = this.order.indexOf(j); if (p >= 0) this.focus(p); }
  key(e) {
    const n = this.order.length; if (!n) return;
    const t = e.target.closest ? e.target.closest('.tile') : null;
    let p = t ? +t.dataset.pos : this.cur; const c = this.cols, page = Math.max(1, Math.floor(this.el.clientHeight / this.rowH)) * c;
    switch (e.key) {
      case 'ArrowRight': p += 1; break; case 'ArrowLeft': p -= 1; break;
      case 'ArrowDown': p += c; break; case 'ArrowUp': p -= c; break;
      case 'PageDown': p += page; break; case 'PageUp': p -= page; break;
      case 'Home': p = 0; break; case 'End': p = n - 1; break;
      case 'Enter': case ' ': e.preventDefault(); this.cur = p; this.o.onOpen(this.order[p]); return;
      default: return;
    }
    e.preventDefault(); this.focus(p);
  }
}

function controls(M, grids, getA, names) {  // wire #sort, #order, #filter, #live-only and #count to one or more grids (named on the count)
  const sortSel = $('#sort'), orderBtn = $('#order'), filt = $('#filter'), live = $('#live-only');
  for (const s of M.sorts) { const o = new Option(s.label, s.key); o.title = s.desc; sortSel.add(o); }
  sortSel.value = M.default_sort;
  const st = {key: M.default_sort, desc: true};
  const setDesc = d => { st.desc = d; orderBtn.textContent = d ? 'descending' : 'ascending'; orderBtn.setAttribute('aria-label', 'sort order: ' + orderBtn.textContent); };
  setDesc(M.sorts.find(s => s.key === st.key).order === 'desc');
  function update() {
    const pred = parseFilter(filt.value);
    $('#filter-msg').textContent = pred ? '' : 'use ids, ranges like 10-99, or lists like 3, 7';
    if (!pred) return;
    const parts = grids.map((g, i) => {
      const A = getA(i), n = A.live.length;
      const keep = live.checked ? (j => pred(j) && A.live[j] === 1) : pred;
      const order = sortOrder(A, n, st.key, st.desc, keep); g.setOrder(order); return [order.length, n];
    });
    const c = $('#count'); c.dataset.shown = parts.map(p => p[0]).join(','); c.dataset.total = parts.map(p => p[1]).join(',');
    c.textContent = parts.map((p, i) => (names ? names[i] + ': ' : '') + (p[0] === p[1] ? p[1] + ' atoms' : p[0] + ' of ' + p[1] + ' atoms')).join(' \u00b7 ');
  }
  sortSel.addEventListener('change', () => { st.key = sortSel.value; setDesc(M.sorts.find(s => s.key === st.key).order === 'desc'); update(); });
  orderBtn.addEventListener('click', () => { setDesc(!st.desc); update(); });
  filt.addEventListener('input', update); live.addEventListener('change', update);
  return {st, update};
}

function initAtlas() {
  const D = JSON.parse($('#atlas-data').textContent), IM = JSON.parse($('#atlas-images').textContent);
  window.ATLAS = D;
  const M = D.meta, A = D.atoms, n = M.n_atoms, H = M.res[0], W = M.res[1];
  const tileScale = Math.max(1, Math.round(TILE / W)), big = Math.max(1, Math.floor(200 / W));
  let cur = -1, head = 0, st;
  const labelOf = j => fmt(st.key === 'id' ? j : A[st.key][j]);
  const grid = new Grid($('#grid'), {cols: M.sprite_cols, w: W, h: H, scale: tileScale, sprite: 'sp-fire', label: labelOf,
    labelName: () => M.sorts.find(s => s.key === st.key).label, onOpen: open});
  const ctl = controls(M, [grid], () => A); st = ctl.st;
  const headSel = $('#head'); let headAuto = true;  // auto: show the head where the atom's drop is largest
  headSel.add(new Option('auto: head of the largest drop', -1));
  M.heads.forEach((h, i) => headSel.add(new Option(i + ': ' + h + (M.change_heads.includes(i) ? '' : ' (no change map)'), i)));
  headSel.addEventListener('change', () => { headAuto = +headSel.value < 0; if (cur >= 0) { head = headAuto ? A.drop_head[cur] : +headSel.value; draw(cur); } });
  $('#alpha').addEventListener('input', () => { const a = $('#alpha').value / 100; $('#fire-ov').style.opacity = a; $('#chg-ov').style.opacity = a; });
  for (const v of ['#fire-view', '#chg-view']) { $(v).style.width = W * big + 2 + 'px'; $(v).style.height = H * big + 2 + 'px'; }
  for (const v of ['#fire-bg', '#chg-bg']) { $(v).width = W * big; $(v).height = H * big; }
  $('#fire-ov').style.opacity = $('#chg-ov').style.opacity = 0.85;

  function draw(j) {
    $('#fire-bg').src = $('#chg-bg').src = 'data:image/png;base64,' + IM.images[head];
    placeTile($('#fire-ov'), j, M.sprite_cols, W, H, big);
    $('#fire-max').textContent = fmt(A.fmax[j]);
    const ci = M.change_heads.indexOf(head), ov = $('#chg-ov'), msg = $('#chg-msg');
    if (ci >= 0) { ov.className = 'ov sp-chg-' + ci; ov.hidden = false; placeTile(ov, j, M.sprite_cols, W, H, big); msg.hidden = true; $('#chg-max').textContent = fmt(A.cmax[j]); }
    else { ov.hidden = true; msg.hidden = false; msg.textContent = 'change maps are embedded for heads ' + M.change_heads.join(', ') + ' only'; $('#chg-max').textContent = '\u2013'; }
    drops(j);
  }
  function drops(j) {
    const d = A.drop[j], N = d.length, Wd = 420, L = 150, R = 64, rh = 18;
    let m = 0; for (const v of d) if (v !== null && Math.abs(v) > m) m = Math.abs(v);
    const neg = d.some(v => v !== null && v < 0), span = neg ? (Wd - L - R) / 2 : Wd - L - R, x0 = neg ? L + span : L;
    let s = '<svg width="' + Wd + '" height="' + (N * rh + 4) + '" role="img" aria-label="PSNR drop per head">';
    d.forEach((v, i) => {
      const y = i * rh + 2, w = m > 0 && v !== null ? Math.abs(v) / m * span : 0, x = v < 0 ? x0 - w : x0;
      const name = M.heads[i].length > 20 ? M.heads[i].slice(0, 19) + '\u2026' : M.heads[i];
      s += '<g data-head="' + i + '" class="' + (i === head ? 'on' : '') + '"><title>' + esc(M.heads[i]) + ': spliced PSNR ' + fmt(M.psnr_spliced[i]) + ' dB, drop ' + fmt(v) + ' dB (with error term ' + fmt(A.drop_err[j][i]) + ' dB)</title>'
        + '<text x="' + (L - 6) + '" y="' + (y + 12) + '" text-anchor="end">' + i + ': ' + esc(name) + '</text>'
        + '<rect x="' + x + '" y="' + (y + 3) + '" width="' + Math.max(w, 1) + '" height="' + (rh - 6) + '"></rect>'
        + '<text x="' + (Wd - R + 6) + '" y="' + (y + 12) + '">' + fmt(v) + '</text></g>';
    });
    s += '<line class="axis" x1="' + x0 + '" x2="' + x0 + '" y1="0" y2="' + (N * rh + 4) + '"></line></svg>';
    $('#drops').innerHTML = s;
  }
  $('#drops').addEventListener('click', e => { const g = e.target.closest('g[data-head]'); if (!g) return; head = +g.dataset.head; headAuto = false; headSel.value = head; draw(cur); });
  function thumb(cls, j, cols, w, h, label, target) {
    const b = document.createElement('button'); b.type = 'button';
    const im = document.createElement('div'); im.className = 'im ' + cls; placeTile(im, j, cols, w, h, Math.max(1, Math.round(40 / w)));
    const s = document.createElement('span'); s.textContent = label; b.append(im, s);
    if (target !== null) { b.addEventListener('click', () => { open(target); grid.reveal(target); }); b.setAttribute('aria-label', 'open atom ' + target + ' (' + label + ')'); }
    else b.disabled = true;
    return b;
  }
  function open(j) {
    if (!(j >= 0 && j < n)) return;
    cur = j; grid.select(j);
    $('#detail-empty').hidden = true; $('#detail-body').hidden = false;
    $('#detail-atom').textContent = j; $('#detail-live').textContent = A.live[j] ? '' : '(dead: never fires on the grid)';
    $('#detail-drop').textContent = fmt(A.drop_max[j]); $('#detail-drop-head').textContent = 'head ' + A.drop_head[j] + ': ' + M.heads[A.drop_head[j]];
    for (const td of document.querySelectorAll('#nums td[id]')) td.textContent = fmt(A[td.id.slice(2)][j]);
    $('#detail-status').textContent = 'Atom ' + j + (A.live[j] ? '' : ' (dead)') + ': largest drop ' + fmt(A.drop_max[j]) + ' dB on head ' + A.drop_head[j];  // the one line announced
    if (headAuto) head = A.drop_head[j];
    draw(j);
    const nn = $('#nn'); nn.textContent = '';
    A.nn[j].forEach((k, i) => nn.appendChild(thumb('sp-fire', k, M.sprite_cols, W, H, '#' + k + ' cos ' + fmt(A.nn_cos[j][i]), k)));
    const mt = $('#match'); mt.textContent = '';
    if (!M.match) mt.innerHTML = '<p class="hint">' + esc(M.match_note || 'No matching for this dictionary.') + '</p>';
    else if (A.match[j] < 0 && !A.match_live[j]) mt.innerHTML = '<p class="hint" id="detail-unmatched" data-reason="constant">No partner: the atom is constant (dead) on the common ' + M.match.grid[0] + '&times;' + M.match.grid[1] + ' grid, so it was left out of the matching.</p>';
    else if (A.match[j] < 0) mt.innerHTML = '<p class="hint" id="detail-unmatched" data-reason="surplus">Unmatched: the matching is one-to-one and the ' + esc(M.match.cohort) + ' dictionary has fewer live atoms on the common ' + M.match.grid[0] + '&times;' + M.match.grid[1] + ' grid (' + M.match.n_live_other + ' against ' + M.match.n_live + ' here), so ' + M.match.n_matched + ' of the ' + M.match.n_live + ' live atoms here have a partner and this one is not among them.</p>';
    else {
      const r = document.createElement('div'); r.className = 'row';
      r.appendChild(thumb('sp-match', j, M.sprite_cols, M.match.grid[1], M.match.grid[0], '#' + A.match[j], null));
      const p = document.createElement('p'); p.innerHTML = 'Atom <b>#' + A.match[j] + '</b> of the ' + esc(M.match.cohort) + ' dictionary (seed ' + M.match.seed + '), firing-map correlation r = <b id="detail-match-corr">' + fmt(A.match_corr[j]) + '</b> on the common ' + M.match.grid[0] + '&times;' + M.match.grid[1] + ' grid (median over matched atoms ' + fmt(M.match.median_corr) + ').';
      r.appendChild(p); mt.appendChild(r);
    }
    history.replaceState(null, '', '#atom=' + j);
  }
  window.ATLAS.open = open;
  ctl.update();
  const m = location.hash.match(/atom=(\d+)/);
  if (m) { open(+m[1]); grid.reveal(+m[1]); }
}

function initCompare() {
  const D = JSON.parse($('#atlas-data').textContent); window.ATLAS = D;
  const grids = D.panes.map((P, i) => {
    const M = P.meta, W = M.res[1], H = M.res[0], A = P.atoms;
    return new Grid($('#grid-' + i), {cols: M.sprite_cols, w: W, h: H, scale: Math.max(1, Math.round(TILE / W)), sprite: 'sp-' + i,
      label: j => fmt(st.key === 'id' ? j : A[st.key][j]), labelName: () => D.meta.sorts.find(s => s.key === st.key).label,
      onOpen: j => { location.href = P.href + '#atom=' + j; }});
  });
  const ctl = controls(D.meta, grids, i => D.panes[i].atoms, D.panes.map(P => P.meta.backbone_label)), st = ctl.st;
  ctl.update();
}

document.addEventListener('DOMContentLoaded', () => {
  const page = document.body.dataset.page;
  if (page === 'atlas') initAtlas(); else if (page === 'compare') initCompare();
});
