// fieldsync manager dashboard. Plain JavaScript, no framework, no network access beyond
// this server: pages are drawn from the JSON report API (/v1/reports/...), charts are SVG
// drawn here. Numbers are shown as the server's KPI engine computed them (numerator and
// denominator), never recomputed from raw findings.
'use strict';

(() => {
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const USER = document.querySelector('meta[name="fs-user"]').content;
  const view = document.getElementById('view');
  const POLL_MS = 2500;
  const st = { ctx: null, seq: 0, refresh: null, sorts: {}, polling: false };

  // ------------------------------------------------------------ helpers

  function h(tag, attrs, ...children) {
    const svg = ['svg', 'g', 'line', 'path', 'rect', 'circle', 'text', 'title', 'polyline'].includes(tag);
    const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const pct = (r) => (r && r.den > 0 ? (r.num / r.den) * 100 : null);
  const fmtPct = (r) => { const p = pct(r); return p === null ? '—' : `${p.toFixed(1)}%`; };
  const fmtFrac = (r) => (r && r.den > 0 ? `${r.num} of ${r.den}` : 'no data');
  const fmtScore = (s) => (s === null || s === undefined ? '—' : s.toFixed(1));
  const fmtInt = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US'));
  const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString('en-GB', { day: '2-digit', month: 'short', hour: '2-digit', minute: '2-digit' }) : '—');
  const fmtClock = (ms) => new Date(ms).toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const fmtDay = (d) => new Date(`${d}T12:00:00Z`).toLocaleDateString('en-GB', { weekday: 'short', day: '2-digit', month: 'short', timeZone: 'UTC' });
  const fmtMoney = (c) => (c === null || c === undefined ? '—' : (c / 100).toFixed(2));
  const STATUS = { planned: 'Planned', in_progress: 'In progress', completed: 'Completed', canceled: 'Canceled', abandoned: 'Abandoned' };
  const badge = (status) => h('span', { class: `badge ${status}` }, STATUS[status] || status);
  const yesNo = (b, yes = 'Yes', no = 'No') => (b === null || b === undefined ? h('span', { class: 'muted' }, '—') : h('span', { class: `badge ${b ? 'yes' : 'no'}` }, b ? yes : no));

  async function api(path, opts = {}) {
    const headers = Object.assign({ Accept: 'application/json' }, opts.headers || {});
    if (opts.body !== undefined) { headers['Content-Type'] = 'application/json'; headers['X-CSRF-Token'] = CSRF; }
    const resp = await fetch(path, { method: opts.method || 'GET', headers, credentials: 'same-origin', body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    if (resp.status === 401) { window.location.assign('/login'); throw new Error('signed out'); }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(body.message || `HTTP ${resp.status}`);
    return body;
  }

  // ------------------------------------------------------------ filters (in the URL)

  function filters() {
    const q = new URLSearchParams(window.location.search);
    return {
      from: q.get('from') || st.ctx.default_from,
      to: q.get('to') || st.ctx.default_to,
      territory: q.get('territory') || '',
      rep: q.get('rep') || '',
    };
  }

  function query(extra = {}) {
    const f = Object.assign(filters(), extra);
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
    return q.toString();
  }

  function filterBar({ reps = true, territory = true } = {}) {
    const f = filters();
    const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Report filters', id: 'filters' });
    form.append(
      h('div', { class: 'field' }, h('label', { for: 'f-from' }, 'From'), h('input', { id: 'f-from', name: 'from', type: 'date', value: f.from, required: true })),
      h('div', { class: 'field' }, h('label', { for: 'f-to' }, 'To'), h('input', { id: 'f-to', name: 'to', type: 'date', value: f.to, required: true })),
    );
    if (territory && st.ctx.territories.length > 1) {
      form.append(h('div', { class: 'field' }, h('label', { for: 'f-territory' }, 'Territory'),
        h('select', { id: 'f-territory', name: 'territory' }, h('option', { value: '' }, 'All my territories'),
          st.ctx.territories.map((t) => h('option', { value: t.id, selected: t.id === f.territory }, t.name)))));
    }
    if (reps) {
      form.append(h('div', { class: 'field' }, h('label', { for: 'f-rep' }, 'Rep'),
        h('select', { id: 'f-rep', name: 'rep' }, h('option', { value: '' }, 'All reps'),
          st.ctx.reps.map((r) => h('option', { value: r.id, selected: r.id === f.rep }, r.name)))));
    }
    form.append(h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const [k, v] of new FormData(form).entries()) if (v) q.set(k, v);
      window.location.search = q.toString();
    });
    return form;
  }

  // ------------------------------------------------------------ sortable tables

  // columns: {key, label, num, value(row) -> sortable, render(row) -> node/string}
  function sortableTable({ id, caption, columns, rows, rowClass, empty = 'Nothing to show.' }) {
    const sort = st.sorts[id] || null;
    const table = h('table', { id, class: 'sortable' });
    if (caption) table.append(h('caption', {}, caption));
    const tbody = h('tbody');
    const headRow = h('tr');
    const ths = columns.map((c) => {
      const th = h('th', { scope: 'col', class: c.num ? 'num' : null, 'aria-sort': 'none', dataset: { key: c.key } });
      if (c.sortable === false) { th.removeAttribute('aria-sort'); th.append(c.label); return th; }
      th.append(h('button', { type: 'button', class: 'sort', onclick: () => {
        const cur = st.sorts[id];
        const dir = cur && cur.key === c.key && cur.dir === 'ascending' ? 'descending' : 'ascending';
        st.sorts[id] = { key: c.key, dir };
        paint();
      } }, c.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }), h('span', { class: 'sr-only' }, ', sort')));
      return th;
    });
    headRow.append(...ths);
    table.append(h('thead', {}, headRow), tbody);

    function paint() {
      const s = st.sorts[id];
      let list = rows.slice();
      if (s) {
        const col = columns.find((c) => c.key === s.key);
        const val = col.value || ((r) => r[col.key]);
        list.sort((a, b) => {
          const x = val(a); const y = val(b);
          let c = 0;
          if (typeof x === 'number' && typeof y === 'number') c = x - y;
          else c = String(x ?? '').localeCompare(String(y ?? ''), 'en', { numeric: true });
          return s.dir === 'ascending' ? c : -c;
        });
      }
      ths.forEach((th, i) => { if (th.hasAttribute('aria-sort')) th.setAttribute('aria-sort', s && s.key === columns[i].key ? s.dir : 'none'); });
      tbody.replaceChildren();
      if (!list.length) tbody.append(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty)));
      for (const r of list) {
        tbody.append(h('tr', { class: rowClass ? rowClass(r) : null },
          columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.render ? c.render(r) : (r[c.key] ?? '—')))));
      }
    }
    paint();
    void sort;
    return h('div', { class: 'table-wrap' }, table);
  }

  const ratioValue = (r) => { const p = pct(r); return p === null ? -1 : p; };
  function pctCell(r, { lowerBetter = false } = {}) {
    const p = pct(r);
    if (p === null) return h('span', { class: 'muted', title: 'no data' }, '—');
    const bar = h('span', { class: 'pct-bar', 'aria-hidden': 'true' }, h('span'));
    bar.firstChild.style.width = `${Math.max(0, Math.min(100, p))}%`;
    if (lowerBetter) bar.firstChild.style.background = p > 10 ? '#ef4444' : '#10b981';
    return h('span', { title: fmtFrac(r) }, `${p.toFixed(1)}%`, bar);
  }

  // ------------------------------------------------------------ KPI cards

  function kpiCards(s, { compact = false } = {}) {
    const t = st.ctx.targets || {};
    const judge = (value, target, lowerBetter) => {
      if (value === null || target === undefined) return '';
      const v = value / 100;
      if (lowerBetter) return v <= target ? 'good' : v <= target + 0.05 ? 'warn' : 'bad';
      return v >= target ? 'good' : v >= target - 0.1 ? 'warn' : 'bad';
    };
    const ratioCard = (key, label, r, target, lowerBetter = false) => {
      const p = pct(r);
      const sub = [fmtFrac(r)];
      if (target !== undefined) sub.push(`target ${lowerBetter ? '≤' : '≥'} ${(target * 100).toFixed(0)}%`);
      return card(key, label, fmtPct(r), sub.join(' · '), judge(p, target, lowerBetter), r);
    };
    const card = (key, label, value, sub, cls, r) => h('div', { class: `kpi ${cls || ''}`, dataset: Object.assign({ kpi: key }, r ? { num: r.num, den: r.den } : {}) },
      h('div', { class: 'kpi-label', id: `kpi-${key}-label` }, label),
      h('div', { class: 'kpi-value', 'aria-describedby': `kpi-${key}-label` }, value),
      h('div', { class: 'kpi-sub' }, sub));
    const osaTarget = t.on_shelf_availability;
    const cards = [
      card('planned', 'Visits planned', fmtInt(s.planned), `${fmtInt(s.ad_hoc)} ad hoc · ${fmtInt(s.open)} open`),
      card('completed', 'Completed', fmtInt(s.completed), `${fmtInt(s.abandoned)} abandoned`),
      card('canceled', 'Canceled', fmtInt(s.canceled), 'by managers or reps'),
      ratioCard('visit_compliance', 'Visit compliance', s.visit_compliance, t.visit_compliance),
      ratioCard('out_of_stock', 'Out-of-stock rate', s.out_of_stock, osaTarget === undefined ? undefined : Math.round((1 - osaTarget) * 100) / 100, true),
      ratioCard('on_shelf_availability', 'On-shelf availability', s.on_shelf_availability, osaTarget),
      ratioCard('planogram_compliance', 'Planogram compliance', s.planogram_compliance, t.planogram_compliance),
      ratioCard('promotion_compliance', 'Promotion compliance', s.promotion_compliance, t.promotion_compliance),
      ratioCard('price_compliance', 'Price compliance', s.price_compliance, t.price_compliance),
      card('perfect_store_score', 'Perfect-store score', fmtScore(s.perfect_store_score), 'weighted OSA, planogram, promotion, price', s.perfect_store_score === null ? '' : s.perfect_store_score >= 85 ? 'good' : s.perfect_store_score >= 70 ? 'warn' : 'bad'),
    ];
    if (!compact) cards.push(card('avg_time_in_store', 'Avg time in store', s.avg_time_in_store_min === null ? '—' : `${s.avg_time_in_store_min.toFixed(0)} min`, 'completed visits with check-out'));
    return h('section', { class: 'kpis', 'aria-label': 'Key figures' }, cards);
  }

  // ------------------------------------------------------------ live refresh

  function setLive(text, cls) {
    const el = document.getElementById('live');
    el.classList.remove('stale', 'flash');
    if (cls) { void el.offsetWidth; el.classList.add(cls); }
    document.getElementById('live-text').textContent = text;
  }

  async function poll() {
    if (st.polling) return;
    st.polling = true;
    try {
      const c = await api(`/v1/reports/changes?since=${st.seq}`);
      if (c.latest_seq > st.seq) {
        st.seq = c.latest_seq;
        if (st.refresh) await st.refresh();
        setLive(`Updated ${fmtClock(Date.now())}`, 'flash');
        document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
      } else if (document.getElementById('live').classList.contains('stale')) {
        setLive('Live');
      }
    } catch (e) {
      setLive('Connection lost — retrying', 'stale');
    } finally {
      st.polling = false;
    }
  }

  // Draws a page: fetches its data and renders; live refresh re-runs the same function.
  async function mount(load, render) {
    const draw = async () => {
      const data = await load();
      const focused = document.activeElement && document.activeElement.id;
      // Parts a page leaves out are null (DOM `append` would write them as "null").
      view.replaceChildren(...[render(data)].flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
      if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
      if (data && typeof data.latest_seq === 'number' && data.latest_seq > st.seq) st.seq = data.latest_seq;
    };
    st.refresh = draw;
    await draw();
  }

  // One term of a `dl.facts`: its label over its value (`attrs` go on the value), kept
  // together as one cell of the grid.
  const fact = (label, attrs, ...value) => h('div', { class: 'fact' }, h('dt', {}, label), h('dd', attrs, ...value));

  function pageHead(title, subtitle, crumbs) {
    return h('div', { class: 'page-head' }, h('div', {},
      crumbs ? h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, crumbs) : null,
      h('h1', {}, title), subtitle ? h('p', { class: 'muted' }, subtitle) : null));
  }

  const rangeText = (d) => `${fmtDay(d.from)} – ${fmtDay(d.to)}`;
  const storeLink = (id, name) => h('a', { href: `/stores/${encodeURIComponent(id)}?${query({ rep: '', territory: '' })}` }, name);
  const visitLink = (id, text) => h('a', { href: `/visits/${encodeURIComponent(id)}`, class: 'nowrap' }, text);

  // ------------------------------------------------------------ overview

  async function changesBanner() {
    const key = `fs-seen:${USER}`;
    const prev = window.localStorage.getItem(key);
    const latest = st.ctx.latest_seq;
    window.localStorage.setItem(key, String(latest));
    if (prev === null) return h('div', { class: 'banner quiet', id: 'changes' }, 'Welcome. From your next visit, this shows what changed since you last looked.');
    if (Number(prev) >= latest) return h('div', { class: 'banner quiet', id: 'changes' }, 'Nothing changed since your last look.');
    const c = await api(`/v1/reports/changes?since=${Number(prev)}&describe=true`);
    return h('div', { class: 'banner', id: 'changes', role: 'status' }, h('div', {},
      h('strong', {}, `${c.changed.length}${c.changed.length >= 50 ? '+' : ''} visit${c.changed.length === 1 ? '' : 's'} changed since your last look`),
      h('ul', {}, c.visits.slice(0, 8).map((v) => h('li', {}, visitLink(v.visit_id, `${v.store_name} · ${fmtDay(v.day)}`), ` — ${v.rep_name}, `, STATUS[v.status] || v.status)))));
  }

  function repTable(reps) {
    return sortableTable({
      id: 'rep-table', caption: 'Per rep', rows: reps, empty: 'No reps in scope.',
      columns: [
        { key: 'name', label: 'Rep', value: (r) => r.name, render: (r) => h('a', { href: `/?${query({ rep: r.rep_id })}` }, r.name) },
        { key: 'planned', label: 'Planned', num: true, value: (r) => r.summary.planned, render: (r) => fmtInt(r.summary.planned) },
        { key: 'completed', label: 'Completed', num: true, value: (r) => r.summary.completed, render: (r) => fmtInt(r.summary.completed) },
        { key: 'canceled', label: 'Canceled', num: true, value: (r) => r.summary.canceled, render: (r) => fmtInt(r.summary.canceled) },
        { key: 'visit_compliance', label: 'Visit compl.', num: true, value: (r) => ratioValue(r.summary.visit_compliance), render: (r) => pctCell(r.summary.visit_compliance) },
        { key: 'out_of_stock', label: 'OOS', num: true, value: (r) => ratioValue(r.summary.out_of_stock), render: (r) => pctCell(r.summary.out_of_stock, { lowerBetter: true }) },
        { key: 'planogram', label: 'Planogram', num: true, value: (r) => ratioValue(r.summary.planogram_compliance), render: (r) => pctCell(r.summary.planogram_compliance) },
        { key: 'promotion', label: 'Promotion', num: true, value: (r) => ratioValue(r.summary.promotion_compliance), render: (r) => pctCell(r.summary.promotion_compliance) },
        { key: 'price', label: 'Price', num: true, value: (r) => ratioValue(r.summary.price_compliance), render: (r) => pctCell(r.summary.price_compliance) },
        { key: 'time', label: 'Avg time', num: true, value: (r) => r.summary.avg_time_in_store_min ?? -1, render: (r) => (r.summary.avg_time_in_store_min === null ? '—' : `${r.summary.avg_time_in_store_min.toFixed(0)} min`) },
        { key: 'pss', label: 'Perfect store', num: true, value: (r) => r.summary.perfect_store_score ?? -1, render: (r) => fmtScore(r.summary.perfect_store_score) },
      ],
    });
  }

  function storeTable(stores) {
    return sortableTable({
      id: 'store-table', caption: 'Per store', rows: stores, empty: 'No stores in scope.',
      rowClass: (s) => (pct(s.summary.out_of_stock) > 10 ? 'row-bad' : null),
      columns: [
        { key: 'name', label: 'Store', value: (s) => s.name, render: (s) => storeLink(s.store_id, s.name) },
        { key: 'last', label: 'Last visit', value: (s) => s.last_visit_day || '', render: (s) => (s.last_visit_day ? h('span', { class: 'nowrap' }, fmtDay(s.last_visit_day)) : h('span', { class: 'muted' }, 'none')) },
        { key: 'visits', label: 'Visits', num: true, value: (s) => s.summary.visits, render: (s) => fmtInt(s.summary.visits) },
        { key: 'completed', label: 'Done', num: true, value: (s) => s.summary.completed, render: (s) => fmtInt(s.summary.completed) },
        { key: 'out_of_stock', label: 'OOS', num: true, value: (s) => ratioValue(s.summary.out_of_stock), render: (s) => pctCell(s.summary.out_of_stock, { lowerBetter: true }) },
        { key: 'planogram', label: 'Planogram', num: true, value: (s) => ratioValue(s.summary.planogram_compliance), render: (s) => pctCell(s.summary.planogram_compliance) },
        { key: 'promotion', label: 'Promotion', num: true, value: (s) => ratioValue(s.summary.promotion_compliance), render: (s) => pctCell(s.summary.promotion_compliance) },
        { key: 'price', label: 'Price', num: true, value: (s) => ratioValue(s.summary.price_compliance), render: (s) => pctCell(s.summary.price_compliance) },
        { key: 'pss', label: 'Perfect store', num: true, value: (s) => s.summary.perfect_store_score ?? -1, render: (s) => fmtScore(s.summary.perfect_store_score) },
      ],
    });
  }

  async function overviewPage() {
    const banner = await changesBanner();
    await mount(() => api(`/v1/reports/overview?${query()}`), (d) => [
      pageHead('Territory overview', `${rangeText(d)} · ${fmtInt(d.summary.visits)} visits · as of ${fmtClock(d.as_of)}`),
      filterBar(),
      banner,
      kpiCards(d.summary),
      h('section', { class: 'panel', 'aria-label': 'Per rep' }, repTable(d.reps)),
      h('section', { class: 'panel', 'aria-label': 'Per store' }, storeTable(d.stores)),
    ]);
  }

  // ------------------------------------------------------------ trends (SVG charts)

  const W = 420; const H = 190; const M = { l: 38, r: 10, t: 12, b: 26 };

  function xScale(n) { const w = W - M.l - M.r; return (i) => M.l + (n <= 1 ? w / 2 : (i * w) / (n - 1)); }
  // Bars: the middle of the i-th of n equal bands, so the first and last bars stay inside
  // the plot (clear of the y-axis labels).
  function bandScale(n) { const w = W - M.l - M.r; return (i) => M.l + ((i + 0.5) * w) / Math.max(1, n); }
  const yScale = (max) => (v) => M.t + (H - M.t - M.b) * (1 - v / max);

  function axes(days, max, unit, x = xScale(days.length)) {
    const y = yScale(max);
    const g = h('g', { class: 'axis' });
    const grid = h('g', { class: 'grid' });
    for (let k = 0; k <= 4; k += 1) {
      const v = (max * k) / 4;
      grid.append(h('line', { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v) }));
      g.append(h('text', { x: M.l - 6, y: y(v) + 3, 'text-anchor': 'end' }, `${Math.round(v)}${unit}`));
    }
    const step = Math.max(1, Math.ceil(days.length / 7));
    days.forEach((d, i) => {
      if (i % step === 0 || i === days.length - 1) g.append(h('text', { x: x(i), y: H - 8, 'text-anchor': 'middle' }, fmtDay(d.day).replace(/^\w+ /, '')));
    });
    return [grid, g];
  }

  function lineChart({ key, title, days, get, target, unit = '%', max = 100, lowerBetter = false }) {
    const x = xScale(days.length); const y = yScale(max);
    const pts = days.map((d, i) => ({ i, v: get(d.summary), d }));
    const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title} per day`, class: 'line-chart', dataset: { chart: key } });
    svg.append(...axes(days, max, unit));
    if (target !== undefined) svg.append(h('line', { class: 'target', x1: M.l, x2: W - M.r, y1: y(target), y2: y(target) }));
    // Line segments break where a day has no data.
    let seg = [];
    const segs = [];
    for (const p of pts) { if (p.v === null) { if (seg.length) segs.push(seg); seg = []; } else seg.push(p); }
    if (seg.length) segs.push(seg);
    for (const s of segs) {
      const dPath = s.map((p, j) => `${j ? 'L' : 'M'}${x(p.i).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
      if (s.length > 1) svg.append(h('path', { class: 'area', d: `${dPath} L${x(s[s.length - 1].i).toFixed(1)},${y(0)} L${x(s[0].i).toFixed(1)},${y(0)} Z` }));
      svg.append(h('path', { class: 'line', d: dPath }));
    }
    for (const p of pts) {
      if (p.v === null) continue;
      svg.append(h('circle', { class: 'pt', cx: x(p.i).toFixed(1), cy: y(p.v).toFixed(1), r: 3.5 }, h('title', {}, `${fmtDay(p.d.day)}: ${p.v.toFixed(1)}${unit}`)));
    }
    const withData = pts.filter((p) => p.v !== null);
    const last = withData.length ? withData[withData.length - 1].v : null;
    return h('figure', { class: 'chart' },
      h('figcaption', {}, h('strong', {}, title), h('span', { class: 'muted small' }, last === null ? 'no data' : `latest ${last.toFixed(1)}${unit}${target !== undefined ? ` · target ${lowerBetter ? '≤' : '≥'} ${target.toFixed(0)}${unit}` : ''}`)),
      svg,
      target !== undefined ? h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'l-target' }), 'target')) : null,
      h('details', { class: 'data' }, h('summary', {}, 'Show data'),
        h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day'), h('th', { scope: 'col', class: 'num' }, title))),
          h('tbody', {}, pts.map((p) => h('tr', {}, h('td', {}, fmtDay(p.d.day)), h('td', { class: 'num' }, p.v === null ? '—' : `${p.v.toFixed(1)}${unit}`)))))));
  }

  function visitsChart(days) {
    const max = Math.max(4, ...days.map((d) => d.summary.visits));
    const nice = Math.ceil(max / 4) * 4;
    const x = bandScale(days.length); const y = yScale(nice);
    const bw = Math.max(2, Math.min(28, ((W - M.l - M.r) / Math.max(1, days.length)) * 0.6));
    const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Visits per day: completed, open and canceled', dataset: { chart: 'visits' } });
    svg.append(...axes(days, nice, '', x));
    days.forEach((d, i) => {
      const s = d.summary;
      let base = 0;
      for (const [cls, n, label] of [['bar-done', s.completed, 'completed'], ['bar-open', s.open, 'open'], ['bar-cancel', s.canceled + s.abandoned, 'canceled/abandoned']]) {
        if (!n) continue;
        svg.append(h('rect', { class: cls, x: (x(i) - bw / 2).toFixed(1), width: bw.toFixed(1), y: y(base + n).toFixed(1), height: (y(base) - y(base + n)).toFixed(1), rx: 2 },
          h('title', {}, `${fmtDay(d.day)}: ${n} ${label}`)));
        base += n;
      }
    });
    return h('figure', { class: 'chart' },
      h('figcaption', {}, h('strong', {}, 'Visits per day'), h('span', { class: 'muted small' }, `${days.reduce((a, d) => a + d.summary.visits, 0)} in range`)),
      svg,
      h('div', { class: 'legend' }, h('span', {}, h('i', { class: 'l-done' }), 'completed'), h('span', {}, h('i', { class: 'l-open' }), 'open'), h('span', {}, h('i', { class: 'l-cancel' }), 'canceled / abandoned')));
  }

  async function trendsPage() {
    const t = st.ctx.targets || {};
    const pc = (k) => (t[k] === undefined ? undefined : t[k] * 100);
    await mount(() => api(`/v1/reports/trends?${query()}`), (d) => [
      pageHead('Trends', `${rangeText(d)} · KPIs per day, from the visits of each store-local day`),
      filterBar(),
      h('section', { class: 'charts', 'aria-label': 'Charts' },
        visitsChart(d.days),
        lineChart({ key: 'visit_compliance', title: 'Visit compliance', days: d.days, get: (s) => pct(s.visit_compliance), target: pc('visit_compliance') }),
        lineChart({ key: 'out_of_stock', title: 'Out-of-stock rate', days: d.days, get: (s) => pct(s.out_of_stock), max: 40, lowerBetter: true, target: t.on_shelf_availability === undefined ? undefined : 100 - pc('on_shelf_availability') }),
        lineChart({ key: 'on_shelf_availability', title: 'On-shelf availability', days: d.days, get: (s) => pct(s.on_shelf_availability), target: pc('on_shelf_availability') }),
        lineChart({ key: 'planogram_compliance', title: 'Planogram compliance', days: d.days, get: (s) => pct(s.planogram_compliance), target: pc('planogram_compliance') }),
        lineChart({ key: 'promotion_compliance', title: 'Promotion compliance', days: d.days, get: (s) => pct(s.promotion_compliance), target: pc('promotion_compliance') }),
        lineChart({ key: 'price_compliance', title: 'Price compliance', days: d.days, get: (s) => pct(s.price_compliance), target: pc('price_compliance') }),
        lineChart({ key: 'perfect_store_score', title: 'Perfect-store score', days: d.days, get: (s) => s.perfect_store_score, unit: '' })),
    ]);
  }

  // ------------------------------------------------------------ store drill-down

  async function storePage(id) {
    await mount(() => api(`/v1/reports/stores/${encodeURIComponent(id)}?${query({ territory: '', rep: '' })}`), (d) => [
      pageHead(d.store.name, `${d.store.address} · ${d.store.territory_name || d.store.territory_id} · ${d.store.groups.join(', ')} · ${rangeText(d)}`,
        [h('a', { href: `/?${query()}` }, 'Overview'), ' › Store']),
      filterBar({ reps: false, territory: false }),
      kpiCards(d.summary, { compact: true }),
      h('div', { class: 'grid-2' },
        h('section', { class: 'panel', 'aria-labelledby': 'oos-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'oos-h' }, 'Out of stock at the last audit'), h('span', { class: 'muted small' }, `${d.out_of_stock.length} product(s)`)),
          sortableTable({ id: 'oos-table', rows: d.out_of_stock, empty: 'Every audited product was on the shelf.', columns: [
            { key: 'name', label: 'Product', render: (p) => p.name || p.product_id },
            { key: 'gtin', label: 'GTIN', render: (p) => h('span', { class: 'mono' }, p.gtin || '—') },
            { key: 'category', label: 'Category' },
            { key: 'day', label: 'Seen', render: (p) => visitLink(p.visit_id, fmtDay(p.day)) },
            { key: 'freq', label: 'OOS audits', num: true, value: (p) => p.out_of_stock_audits / Math.max(1, p.audits), render: (p) => `${p.out_of_stock_audits} of ${p.audits}` },
          ] })),
        h('section', { class: 'panel', 'aria-labelledby': 'pos-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'pos-h' }, 'Non-compliant planogram positions'), h('span', { class: 'muted small' }, `${d.positions.length} position(s)`)),
          sortableTable({ id: 'pos-table', rows: d.positions, empty: 'All audited positions were compliant.', columns: [
            { key: 'where', label: 'Shelf / pos.', value: (p) => (p.shelf || 0) * 100 + (p.position || 0), render: (p) => `${p.shelf ?? '?'} / ${p.position ?? '?'}` },
            { key: 'product_name', label: 'Product', render: (p) => p.product_name || p.product_id || '—' },
            { key: 'present', label: 'Present', render: (p) => yesNo(p.present) },
            { key: 'facings', label: 'Facings', num: true, value: (p) => p.actual_facings ?? -1, render: (p) => `${p.actual_facings ?? '—'} / ${p.expected_facings ?? '—'}` },
            { key: 'correct_position', label: 'Right place', render: (p) => yesNo(p.correct_position) },
          ] }))),
      h('section', { class: 'panel', 'aria-labelledby': 'promo-h' }, h('h2', { id: 'promo-h' }, 'Promotions at the last audit'),
        sortableTable({ id: 'promo-table', rows: d.promotions, rowClass: (p) => (p.compliant ? null : 'row-bad'), empty: 'No promotion audited in this range.', columns: [
          { key: 'name', label: 'Promotion', render: (p) => p.name || p.promotion_id },
          { key: 'display_location', label: 'Display', render: (p) => (p.display_location || '').replace(/_/g, ' ') },
          { key: 'display_in_place', label: 'Display built', render: (p) => yesNo(p.display_in_place) },
          { key: 'promo_price_correct', label: 'Promo price', render: (p) => yesNo(p.promo_price_correct) },
          { key: 'materials_present', label: 'Materials', render: (p) => yesNo(p.materials_present) },
          { key: 'compliant', label: 'Compliant', value: (p) => (p.compliant ? 1 : 0), render: (p) => yesNo(p.compliant) },
          { key: 'day', label: 'Seen', render: (p) => visitLink(p.visit_id, fmtDay(p.day)) },
        ] })),
      h('section', { class: 'panel', 'aria-labelledby': 'visits-h' }, h('h2', { id: 'visits-h' }, 'Last visits'), visitTable('store-visits', d.visits)),
    ]);
  }

  // A visit's store, marked when head office closed it (its visits stay reported).
  function storeCell(v) {
    return [v.store_name, v.store_closed ? h('span', { class: 'badge no', title: 'closed by head office' }, ' closed') : null];
  }

  function visitTable(id, visits) {
    return sortableTable({ id, rows: visits, empty: 'No visits in this range.', columns: [
      { key: 'planned_start', label: 'Planned', value: (v) => v.planned_start, render: (v) => visitLink(v.visit_id, fmtTime(v.planned_start)) },
      { key: 'store_name', label: 'Store', render: storeCell },
      { key: 'rep_name', label: 'Rep' },
      { key: 'status', label: 'Status', render: (v) => badge(v.status) },
      { key: 'check_in_at', label: 'Checked in', value: (v) => v.check_in_at || 0, render: (v) => [fmtTime(v.check_in_at), v.outside_geofence ? h('span', { class: 'badge no', title: 'outside the geofence' }, ' geofence') : null] },
      { key: 'out_of_stock', label: 'OOS', num: true, value: (v) => ratioValue(v.out_of_stock), render: (v) => pctCell(v.out_of_stock, { lowerBetter: true }) },
      { key: 'planogram', label: 'Planogram', num: true, value: (v) => ratioValue(v.planogram_compliance), render: (v) => pctCell(v.planogram_compliance) },
      { key: 'pss', label: 'Perfect store', num: true, value: (v) => v.perfect_store_score ?? -1, render: (v) => fmtScore(v.perfect_store_score) },
    ] });
  }

  // ------------------------------------------------------------ visit detail

  function parseVal(s) { try { return JSON.parse(s); } catch { return s; } }
  function showVal(s) { const v = parseVal(s); return v === null ? '∅' : typeof v === 'object' ? JSON.stringify(v) : String(v); }

  async function visitPage(id) {
    await mount(() => api(`/v1/reports/visits/${encodeURIComponent(id)}`), (d) => {
      const v = d.visit;
      const conflictPaths = new Set(d.conflicts.map((c) => c.path));
      const names = {
        inventory: Object.fromEntries(d.inventory.map((l) => [l.line.product_id, l.name])),
        planogram: Object.fromEntries(d.planogram.map((p) => [p.result.position_id, p.product_name && `${p.product_name} (shelf ${p.shelf}/${p.position})`])),
        promotions: Object.fromEntries(d.promotions.map((p) => [p.check.promotion_id, p.name])),
      };
      const FIELD = { shelf: 'shelf qty', back: 'backroom qty', oos: 'out of stock', price: 'price', facings: 'facings', present: 'present', correct: 'right position', display: 'display built', price_ok: 'promo price OK', materials: 'materials', rep: 'rep', start: 'planned start', end: 'planned end', store: 'store', priority: 'priority', instructions: 'instructions', template: 'template', ad_hoc: 'ad hoc', status: 'status' };
      const fieldLabel = (p) => {
        const parts = p.split('/');
        if (parts.length === 3 && names[parts[0]]) return `${names[parts[0]][parts[1]] || parts[1]} · ${FIELD[parts[2]] || parts[2]}`;
        if (parts.length === 2) return `${parts[0] === 'plan' ? 'Plan' : parts[0] === 'actual' ? 'Visit' : parts[0]} · ${FIELD[parts[1]] || parts[1].replace(/_/g, ' ')}`;
        return p;
      };
      const fieldCell = (p) => [h('span', {}, fieldLabel(p)), h('br'), h('span', { class: 'mono muted small' }, p)];
      const lineConflict = (prefix) => [...conflictPaths].some((p) => p.startsWith(prefix));
      const facts = h('dl', { class: 'facts' },
        fact('Rep', { id: 'visit-rep' }, d.rep.name),
        fact('Status', {}, badge(v.status), v.cancel_reason ? ` ${v.cancel_reason}` : '', v.abandon_reason ? ` ${v.abandon_reason}` : ''),
        fact('Planned window', {}, `${fmtTime(v.plan.planned_start)} – ${fmtTime(v.plan.planned_end).split(', ').pop()}`),
        fact('Check-in', {}, v.check_in ? [fmtTime(v.check_in.at), ` · ${Math.round(v.check_in.distance_m)} m from the store`, v.check_in.outside_geofence ? h('span', { class: 'badge no' }, ' outside geofence') : ''] : '—'),
        fact('Check-out', {}, v.check_out ? [fmtTime(v.check_out.at), ` · ${Math.round(v.check_out.distance_m)} m from the store`] : '—'),
        fact('Template · priority', {}, `${d.template_name || v.plan.template_id} · P${v.plan.priority}`),
        fact('Judged with', { id: 'visit-reference' }, `reference data v${d.reference_version}, in effect when the visit was worked`),
        v.plan.instructions ? fact('Instructions', {}, v.plan.instructions) : null);
      const conflicts = d.conflicts.length ? h('section', { class: 'panel conflicts', 'aria-labelledby': 'conf-h', id: 'conflicts' },
        h('h2', { id: 'conf-h' }, `⚠ ${d.conflicts.length} conflicting field${d.conflicts.length === 1 ? '' : 's'}`),
        h('p', { class: 'muted small' }, 'Two devices changed these fields concurrently. The highlighted value is the one in use; the others are kept.'),
        d.conflicts.map((c) => h('div', { class: 'conflict-item' }, h('strong', {}, fieldLabel(c.path)), ' ', h('span', { class: 'mono muted small' }, c.path),
          h('div', { class: 'conflict-values' }, c.values.map((x) => h('div', { class: `conflict-value${x.winner ? ' winner' : ''}` },
            h('strong', {}, showVal(x.value)), ` — ${x.user_name || '?'} on ${x.device_id || '?'}, ${fmtTime(x.at)}`, x.winner ? h('span', { class: 'badge yes' }, ' in use') : null)))))) : null;
      const taskLabel = { inventory_check: 'Inventory check', planogram_check: 'Planogram check', promotion_check: 'Promotion check', survey: 'Survey', order: 'Order' };
      const tasks = h('section', { class: 'panel', 'aria-labelledby': 'tasks-h' }, h('h2', { id: 'tasks-h' }, 'Tasks'),
        h('div', { class: 'tasks' }, d.tasks.map((t) => h('div', { class: 'task' },
          h('div', {}, h('strong', {}, taskLabel[t.kind] || t.kind), t.required ? h('span', { class: 'muted small' }, ' · required') : null),
          h('progress', { max: Math.max(1, t.total), value: t.done, 'aria-label': `${taskLabel[t.kind] || t.kind} progress` }),
          h('div', { class: 'small muted' }, `${t.done} of ${t.total}${t.complete ? ' · done' : ''}`)))));
      const inv = sortableTable({ id: 'inventory-table', caption: 'Inventory', rows: d.inventory, empty: 'No inventory lines.',
        rowClass: (l) => (lineConflict(`inventory/${l.line.product_id}/`) ? 'row-conflict' : l.out_of_stock ? 'row-bad' : null),
        columns: [
          { key: 'name', label: 'Product', value: (l) => l.name || l.line.product_id, render: (l) => [l.name || l.line.product_id, lineConflict(`inventory/${l.line.product_id}/`) ? h('span', { class: 'badge conflict' }, ' conflict') : null] },
          { key: 'shelf', label: 'Shelf', num: true, value: (l) => l.line.shelf_qty ?? -1, render: (l) => l.line.shelf_qty ?? '—' },
          { key: 'backroom', label: 'Backroom', num: true, value: (l) => l.line.backroom_qty ?? -1, render: (l) => l.line.backroom_qty ?? '—' },
          { key: 'oos', label: 'Out of stock', value: (l) => (l.out_of_stock ? 1 : 0), render: (l) => (l.out_of_stock === null ? yesNo(null) : yesNo(!l.out_of_stock, 'In stock', 'OOS')) },
          { key: 'price', label: 'Price', num: true, value: (l) => l.line.observed_price_cents ?? -1, render: (l) => fmtMoney(l.line.observed_price_cents) },
          { key: 'price_ok', label: 'Price OK', value: (l) => (l.price_ok ? 1 : 0), render: (l) => yesNo(l.price_ok) },
          { key: 'facings', label: 'Facings', num: true, value: (l) => l.line.facings ?? -1, render: (l) => l.line.facings ?? '—' },
        ] });
      const pos = sortableTable({ id: 'planogram-table', caption: 'Planogram', rows: d.planogram, empty: 'No planogram audit.',
        rowClass: (p) => (lineConflict(`planogram/${p.result.position_id}/`) ? 'row-conflict' : p.compliant === false ? 'row-bad' : null),
        columns: [
          { key: 'where', label: 'Shelf / pos.', value: (p) => (p.shelf || 0) * 100 + (p.position || 0), render: (p) => `${p.shelf ?? '?'} / ${p.position ?? '?'}` },
          { key: 'product', label: 'Product', value: (p) => p.product_name || '', render: (p) => p.product_name || p.result.position_id },
          { key: 'present', label: 'Present', render: (p) => yesNo(p.result.present) },
          { key: 'facings', label: 'Facings', num: true, value: (p) => p.result.actual_facings ?? -1, render: (p) => `${p.result.actual_facings ?? '—'} / ${p.expected_facings ?? '—'}` },
          { key: 'compliant', label: 'Compliant', value: (p) => (p.compliant ? 1 : 0), render: (p) => yesNo(p.compliant) },
        ] });
      const promos = sortableTable({ id: 'promotion-table', caption: 'Promotions', rows: d.promotions, empty: 'No promotion checks.',
        rowClass: (p) => (p.compliant === false ? 'row-bad' : null),
        columns: [
          { key: 'name', label: 'Promotion', value: (p) => p.name || '', render: (p) => p.name || p.check.promotion_id },
          { key: 'display', label: 'Display built', render: (p) => yesNo(p.check.display_in_place) },
          { key: 'price', label: 'Promo price', render: (p) => yesNo(p.check.promo_price_correct) },
          { key: 'materials', label: 'Materials', render: (p) => yesNo(p.check.materials_present) },
          { key: 'compliant', label: 'Compliant', value: (p) => (p.compliant ? 1 : 0), render: (p) => yesNo(p.compliant) },
        ] });
      // Who wrote this visit: one row per user and device.
      const who = new Map();
      for (const x of d.history) {
        const k = `${x.user_id}|${x.device_id}`;
        const w = who.get(k) || { user_name: x.user_name || 'unknown', device_id: x.device_id || '—', changes: new Set(), fields: 0, first: x.at, last: x.at };
        w.changes.add(x.change_hash); w.fields += 1; w.first = Math.min(w.first, x.at); w.last = Math.max(w.last, x.at);
        who.set(k, w);
      }
      const contributors = sortableTable({ id: 'contributors', caption: 'Who changed this visit', rows: [...who.values()].map((w) => Object.assign(w, { n: w.changes.size })),
        columns: [
          { key: 'user_name', label: 'User', render: (w) => h('span', { class: 'history-user' }, w.user_name) },
          { key: 'device_id', label: 'Device', render: (w) => h('span', { class: 'mono' }, w.device_id) },
          { key: 'n', label: 'Changes', num: true },
          { key: 'fields', label: 'Fields written', num: true },
          { key: 'first', label: 'First', render: (w) => fmtTime(w.first) },
          { key: 'last', label: 'Last', render: (w) => fmtTime(w.last) },
        ] });
      const scopes = { all: 'All fields', conflicts: 'Conflicting fields', plan: 'Plan and status', inventory: 'Inventory', planogram: 'Planogram', promotions: 'Promotions', other: 'Survey, order, notes' };
      const scope = st.historyScope || 'all';
      const inScope = (x) => scope === 'all' || (scope === 'conflicts' ? x.conflict
        : scope === 'plan' ? /^(plan|actual)\//.test(x.path) || ['status'].includes(x.path)
          : scope === 'other' ? !/^(plan|actual|inventory|planogram|promotions)\//.test(x.path) : x.path.startsWith(`${scope}/`));
      const filtered = d.history.map((x, i) => Object.assign({ i }, x)).filter(inScope);
      const limit = st.historyAll ? filtered.length : 60;
      const history = sortableTable({ id: 'history', caption: `Field history (${filtered.length} of ${d.history.length} field changes)`, rows: filtered.slice(0, limit),
        rowClass: (x) => (x.conflict ? 'row-conflict' : null),
        columns: [
          { key: 'at', label: 'When', value: (x) => x.at * 10000 + x.i, render: (x) => fmtTime(x.at) },
          { key: 'user_name', label: 'User', render: (x) => h('span', { class: 'history-user' }, x.user_name || 'unknown') },
          { key: 'device_id', label: 'Device', render: (x) => h('span', { class: 'mono' }, x.device_id || '—') },
          { key: 'path', label: 'Field', render: (x) => [fieldCell(x.path), x.conflict ? h('span', { class: 'badge conflict' }, 'conflict') : null] },
          { key: 'value', label: 'Value', render: (x) => showVal(x.value) },
        ] });
      const scopeSel = h('select', { id: 'history-scope' }, Object.entries(scopes).map(([k, label]) => h('option', { value: k, selected: k === scope }, label)));
      scopeSel.addEventListener('change', () => { st.historyScope = scopeSel.value; st.historyAll = false; st.refresh(); });
      const historyPanel = h('section', { class: 'panel', 'aria-labelledby': 'history-h' },
        h('div', { class: 'panel-head' }, h('h2', { id: 'history-h' }, 'History'),
          h('div', { class: 'field inline' }, h('label', { for: 'history-scope' }, 'Show'), scopeSel)),
        contributors, h('div', { class: 'spacer' }), history,
        filtered.length > limit ? h('button', { type: 'button', class: 'btn', id: 'history-more', onclick: () => { st.historyAll = true; st.refresh(); } }, `Show all ${filtered.length} field changes`) : null);
      const extra = h('div', { class: 'grid-2' },
        h('section', { class: 'panel', 'aria-labelledby': 'survey-h' }, h('h2', { id: 'survey-h' }, 'Survey and order'),
          d.survey.length ? h('dl', { class: 'facts' }, d.survey.map((a) => fact(a.text || a.question_id, {}, a.value && a.value.value !== undefined ? (typeof a.value.value === 'boolean' ? (a.value.value ? 'Yes' : 'No') : String(a.value.value)) : '—'))) : h('p', { class: 'muted' }, 'No survey answers.'),
          d.orders.length ? h('ul', {}, d.orders.map((o) => h('li', {}, `${o.quantity} × ${o.name || o.product_id}`))) : h('p', { class: 'muted' }, v.order_submitted ? 'Order submitted without lines (no order).' : 'No order.')),
        h('section', { class: 'panel', 'aria-labelledby': 'notes-h' }, h('h2', { id: 'notes-h' }, 'Notes'), v.notes ? h('p', {}, v.notes) : h('p', { class: 'muted' }, 'No notes.')));
      return [
        pageHead(`${d.store ? d.store.name : v.plan.store_id}${d.store && d.store.closed ? ' (closed by head office)' : ''} · ${d.day ? fmtDay(d.day) : ''}`, `Visit ${d.visit_id}`,
          [h('a', { href: '/' }, 'Overview'), ' › ', d.store ? storeLink(d.store.id, d.store.name) : 'Store', ' › Visit']),
        h('section', { class: 'panel', 'aria-label': 'Visit facts' }, facts),
        conflicts,
        kpiCards(d.summary, { compact: true }),
        tasks,
        h('section', { class: 'panel' }, inv),
        h('div', { class: 'grid-2' }, h('section', { class: 'panel' }, pos), h('section', { class: 'panel' }, promos)),
        extra,
        historyPanel,
      ];
    });
  }

  // ------------------------------------------------------------ planning

  const pad = (n) => String(n).padStart(2, '0');
  const localDate = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const localDateTime = (ms) => { const d = new Date(ms); return `${localDate(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}`; };

  async function planningPage() {
    const ctx = st.ctx;
    const today = new Date();
    const from = localDate(new Date(today.getTime() - 86400000));
    const to = localDate(new Date(today.getTime() + 7 * 86400000));
    let notice = null;
    const repsFor = (storeId) => {
      const s = ctx.stores.find((x) => x.id === storeId);
      return ctx.reps.filter((r) => !s || r.territories.includes(s.territory_id));
    };
    const form = () => {
      const tomorrow = localDate(new Date(today.getTime() + 86400000));
      const storeSel = h('select', { id: 'p-store', name: 'store_id', required: true },
        ctx.territories.map((t) => h('optgroup', { label: t.name }, ctx.stores.filter((s) => s.territory_id === t.id).map((s) => h('option', { value: s.id }, s.name)))));
      const repSel = h('select', { id: 'p-rep', name: 'rep_id', required: true });
      const fillReps = () => repSel.replaceChildren(...repsFor(storeSel.value).map((r) => h('option', { value: r.id }, r.name)));
      storeSel.addEventListener('change', fillReps);
      fillReps();
      const f = h('form', { id: 'plan-form', class: 'form-grid', 'aria-labelledby': 'plan-h' },
        h('div', { class: 'field' }, h('label', { for: 'p-store' }, 'Store'), storeSel),
        h('div', { class: 'field' }, h('label', { for: 'p-rep' }, 'Rep'), repSel),
        h('div', { class: 'field' }, h('label', { for: 'p-date' }, 'Date'), h('input', { id: 'p-date', name: 'date', type: 'date', value: tomorrow, required: true })),
        h('div', { class: 'field' }, h('label', { for: 'p-time' }, 'Start time'), h('input', { id: 'p-time', name: 'time', type: 'time', value: '09:00', required: true })),
        h('div', { class: 'field' }, h('label', { for: 'p-duration' }, 'Duration (minutes)'), h('input', { id: 'p-duration', name: 'duration', type: 'number', min: 5, max: 600, step: 5, value: 60, required: true })),
        h('div', { class: 'field' }, h('label', { for: 'p-priority' }, 'Priority'), h('select', { id: 'p-priority', name: 'priority' }, [1, 2, 3, 4, 5].map((p) => h('option', { value: p, selected: p === 3 }, `P${p}${p === 1 ? ' (highest)' : p === 5 ? ' (lowest)' : ''}`)))),
        h('div', { class: 'field' }, h('label', { for: 'p-template' }, 'Visit template'), h('select', { id: 'p-template', name: 'template_id' }, ctx.templates.map((t) => h('option', { value: t.id }, t.name)))),
        h('div', { class: 'field wide' }, h('label', { for: 'p-instructions' }, 'Instructions for the rep'), h('textarea', { id: 'p-instructions', name: 'instructions', maxlength: 2000 })),
        h('div', { class: 'field' }, h('button', { type: 'submit', class: 'btn btn-primary', id: 'p-submit' }, 'Plan visit')));
      f.addEventListener('submit', async (e) => {
        e.preventDefault();
        const fd = new FormData(f);
        const start = new Date(`${fd.get('date')}T${fd.get('time')}`).getTime();
        try {
          const out = await api('/v1/dashboard/visits', { method: 'POST', body: {
            store_id: fd.get('store_id'), rep_id: fd.get('rep_id'), planned_start: start,
            planned_end: start + Number(fd.get('duration')) * 60000, priority: Number(fd.get('priority')),
            template_id: fd.get('template_id'), instructions: fd.get('instructions') || '',
          } });
          notice = { ok: true, id: out.visit_id, text: `Planned: ${ctx.stores.find((s) => s.id === out.visit.plan.store_id)?.name} for ${ctx.reps.find((r) => r.id === out.visit.plan.rep_id)?.name}, ${fmtTime(start)}. It reaches the rep's phone at the next sync.` };
        } catch (err) {
          notice = { ok: false, text: `Could not plan the visit: ${err.message}` };
        }
        await st.refresh();
      });
      return f;
    };
    const noticeEl = () => (notice ? h('p', { class: `notice ${notice.ok ? 'ok' : 'err'}`, role: notice.ok ? 'status' : 'alert', id: 'plan-notice', dataset: notice.id ? { visitId: notice.id } : {} }, notice.text) : null);
    const rowActions = (v) => {
      if (v.status !== 'planned') return h('span', { class: 'muted small' }, 'not editable');
      const rid = `r-${v.visit_id}`;
      const rep = h('select', { id: `${rid}-rep`, 'aria-label': `Rep for the visit at ${v.store_name}` }, repsFor(v.store_id).map((r) => h('option', { value: r.id, selected: r.id === v.rep_id }, r.name)));
      const when = h('input', { id: `${rid}-when`, type: 'datetime-local', value: localDateTime(v.planned_start), 'aria-label': `New start for the visit at ${v.store_name}` });
      const save = h('button', { type: 'submit', class: 'btn btn-sm' }, 'Save');
      const cancel = h('button', { type: 'button', class: 'btn btn-sm btn-danger', onclick: async () => {
        try { await api(`/v1/dashboard/visits/${encodeURIComponent(v.visit_id)}`, { method: 'PATCH', body: { status: 'canceled', cancel_reason: 'Canceled by the manager in the dashboard' } }); notice = { ok: true, text: `Canceled the visit at ${v.store_name}.` }; } catch (err) { notice = { ok: false, text: err.message }; }
        await st.refresh();
      } }, 'Cancel visit');
      const f = h('form', { class: 'row-form' }, rep, when, save, cancel);
      f.addEventListener('submit', async (e) => {
        e.preventDefault();
        const body = {};
        if (rep.value !== v.rep_id) body.rep_id = rep.value;
        const start = new Date(when.value).getTime();
        if (start !== v.planned_start) body.planned_start = start;
        try { await api(`/v1/dashboard/visits/${encodeURIComponent(v.visit_id)}`, { method: 'PATCH', body }); notice = { ok: true, text: `Updated the visit at ${v.store_name}.` }; } catch (err) { notice = { ok: false, text: err.message }; }
        await st.refresh();
      });
      return f;
    };
    const planForm = form();
    await mount(() => api(`/v1/reports/visits?from=${from}&to=${to}`), (d) => [
      pageHead('Planning', 'Plan, assign and reschedule visits. Changes reach the reps\' phones at their next sync.'),
      h('section', { class: 'panel', 'aria-labelledby': 'plan-h' }, h('h2', { id: 'plan-h' }, 'Plan a visit'), planForm, noticeEl()),
      h('section', { class: 'panel', 'aria-labelledby': 'upcoming-h' }, h('h2', { id: 'upcoming-h' }, `Visits ${fmtDay(d.from)} – ${fmtDay(d.to)}`),
        sortableTable({ id: 'planning-table', rows: d.visits, empty: 'No visits planned.', columns: [
          { key: 'planned_start', label: 'When', value: (v) => v.planned_start, render: (v) => visitLink(v.visit_id, fmtTime(v.planned_start)) },
          { key: 'store_name', label: 'Store', render: storeCell },
          { key: 'rep_name', label: 'Rep' },
          { key: 'status', label: 'Status', render: (v) => badge(v.status) },
          { key: 'priority', label: 'Priority', num: true, render: (v) => `P${v.priority}` },
          { key: 'actions', label: 'Assign / reschedule', sortable: false, render: rowActions },
        ] })),
    ]);
  }

  // ------------------------------------------------------------ export

  async function exportPage() {
    await mount(() => api(`/v1/reports/visits?${query()}`), (d) => {
      const n = d.visits.length;
      const lines = d.visits.reduce((a, v) => a + v.out_of_stock.den, 0);
      return [
        pageHead('Export', `${rangeText(d)} · CSV files for the selected range and filters`),
        filterBar(),
        h('div', { class: 'export-cards' },
          h('section', { class: 'panel export-card', 'aria-labelledby': 'ex-v' }, h('h2', { id: 'ex-v' }, 'Visits'),
            h('p', { class: 'muted' }, `${n} visit(s): plan, status, check-in/out, and per-visit KPI numerators and denominators.`),
            h('a', { class: 'btn btn-primary', id: 'export-visits', href: `/v1/reports/export/visits.csv?${query()}`, download: '' }, 'Download visits.csv')),
          h('section', { class: 'panel export-card', 'aria-labelledby': 'ex-i' }, h('h2', { id: 'ex-i' }, 'Inventory lines'),
            h('p', { class: 'muted' }, `One row per product counted (${lines} assortment lines audited in range).`),
            h('a', { class: 'btn btn-primary', id: 'export-inventory', href: `/v1/reports/export/inventory.csv?${query()}`, download: '' }, 'Download inventory.csv'))),
        h('section', { class: 'panel', 'aria-labelledby': 'ex-p' }, h('h2', { id: 'ex-p' }, 'Preview'), visitTable('export-table', d.visits.slice(0, 50))),
      ];
    });
  }

  // ------------------------------------------------------------ router

  async function route() {
    const path = window.location.pathname;
    const navKey = path === '/' ? 'overview' : path.split('/')[1];
    document.querySelectorAll('[data-nav]').forEach((a) => {
      if (a.dataset.nav === navKey) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
      if (a.dataset.nav !== 'planning') a.href = `${a.getAttribute('href').split('?')[0]}?${query()}`;
    });
    let m;
    if (path === '/') return overviewPage();
    if (path === '/trends') return trendsPage();
    if (path === '/planning') return planningPage();
    if (path === '/export') return exportPage();
    if ((m = path.match(/^\/stores\/([^/]+)$/))) return storePage(decodeURIComponent(m[1]));
    if ((m = path.match(/^\/visits\/([^/]+)$/))) return visitPage(decodeURIComponent(m[1]));
    view.replaceChildren(h('p', { class: 'error-box' }, 'No such page.'));
    return null;
  }

  async function start() {
    try {
      st.ctx = await api('/v1/reports/context');
      st.seq = st.ctx.latest_seq;
      await route();
      document.body.dataset.ready = 'true';
    } catch (e) {
      view.replaceChildren(h('p', { class: 'error-box', role: 'alert' }, `Could not load this page: ${e.message}`));
    }
    window.setInterval(poll, POLL_MS);
  }

  start();
})();
