// Sluice dashboard: polls /v1/jobs/{id}/dashboard every second and draws it.
// Plain DOM and inline SVG only; nothing is fetched but the two JSON routes.
'use strict';

const POLL_MS = 1000;
const TOKEN_KEY = 'sluice.token';
const $ = (id) => document.getElementById(id);

const state = {
  jobs: [],
  jobId: null,
  view: null,         // last successful JobView
  prev: null,         // counters of the poll before, for rates
  rates: null,        // rates derived from prev → view
  updates: 0,         // successful polls
  selected: null,     // {stage, name} of the operator in the detail panel
  timer: null,
  gen: 0,             // bumped to orphan an in-flight poll
  polls: 0,
};

// ---------- formatting ----------

function esc(s) {
  return String(s == null ? '' : s).replace(/[&<>"']/g, (c) =>
    ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function fmtInt(n) {
  return n == null ? '—' : Math.round(n).toLocaleString('en-US');
}

// Short number: 950, 12.3k, 4.5M.
function fmtShort(n) {
  if (n == null || !isFinite(n)) return '—';
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(a >= 1e10 ? 0 : 1) + 'G';
  if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + 'M';
  if (a >= 1e3) return (n / 1e3).toFixed(a >= 1e4 ? 0 : 1) + 'k';
  if (a >= 10 || Number.isInteger(n)) return String(Math.round(n));
  return n.toFixed(1);
}

function fmtRate(n) {
  return n == null ? '—' : fmtShort(n) + '/s';
}

function fmtMs(ms) {
  if (ms == null || !isFinite(ms)) return '—';
  if (ms >= 10000) return (ms / 1000).toFixed(1) + ' s';
  if (ms >= 100) return Math.round(ms) + ' ms';
  if (ms >= 10) return ms.toFixed(1) + ' ms';
  return ms.toFixed(2) + ' ms';
}

function fmtSeconds(s) {
  if (s == null || !isFinite(s)) return '—';
  if (s >= 1) return s.toFixed(s >= 10 ? 0 : 2) + ' s';
  if (s >= 1e-3) return (s * 1e3).toFixed(s >= 1e-2 ? 0 : 1) + ' ms';
  return (s * 1e6).toFixed(0) + ' µs';
}

function fmtBytes(b) {
  if (b == null || !isFinite(b)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(b) >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i === 0 ? String(Math.round(b)) : b.toFixed(b >= 100 ? 0 : 1)) + ' ' + units[i];
}

function fmtDuration(ms) {
  if (ms == null || ms < 0) return '—';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const pad = (x) => String(x).padStart(2, '0');
  if (d) return `${d}d ${h}h ${pad(m)}m`;
  if (h) return `${h}h ${pad(m)}m ${pad(s)}s`;
  if (m) return `${m}m ${pad(s)}s`;
  return `${s}s`;
}

function fmtClock(ms) {
  if (ms == null) return '—';
  const d = new Date(ms);
  const pad = (x) => String(x).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtPct(f) {
  return f == null ? '—' : Math.round(f * 100) + '%';
}

// Flink's back-pressure levels: OK < 10%, LOW < 50%, HIGH otherwise.
function level(f) {
  if (f == null) return 'none';
  return f < 0.1 ? 'ok' : f < 0.5 ? 'low' : 'high';
}

function shareBadge(label, f) {
  const lv = level(f);
  const word = { ok: 'OK', low: 'LOW', high: 'HIGH', none: '' }[lv];
  return `<span class="share ${lv}" title="${esc(label)} ${word}">${esc(label)} ${fmtPct(f)}</span>`;
}

// A horizontal bar of value/max (0..1), used in tables.
function bar(f, cls) {
  const w = Math.max(0, Math.min(1, f || 0)) * 100;
  return `<span class="bar ${cls || ''}"><span style="width:${w.toFixed(1)}%"></span></span>`;
}

// ---------- fetching ----------

class AuthError extends Error {}

async function api(path) {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = 'Bearer ' + token;
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), 5000);
  try {
    const res = await fetch(path, { headers, signal: ctl.signal, cache: 'no-store' });
    if (res.status === 401 || res.status === 403) {
      let msg = res.status === 401 ? 'unauthorized' : 'forbidden';
      try { msg = (await res.json()).error || msg; } catch (_) { /* not JSON */ }
      throw new AuthError(msg);
    }
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    return await res.json();
  } finally {
    clearTimeout(t);
  }
}

// ---------- sign-in ----------

function showSignin(message) {
  stopPolling();
  document.body.classList.add('signed-out');   // hides the job header too
  $('dashboard').hidden = true;
  $('signin').hidden = false;
  $('sign-out').hidden = true;
  const err = $('signin-error');
  err.textContent = message || '';
  err.hidden = !message;
  setStatus(false, 'signed out');
  $('token').focus();
}

function onSignin(ev) {
  ev.preventDefault();
  const token = $('token').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  start();
}

function onSignout(ev) {
  ev.preventDefault();
  sessionStorage.removeItem(TOKEN_KEY);
  resetJob(null);
  start();
}

// ---------- polling ----------

function setStatus(ok, text) {
  const s = $('status');
  s.textContent = text || (ok ? 'live' : 'disconnected');
  s.className = 'badge ' + (ok ? 'on' : 'off');
}

function stopPolling() {
  state.gen++;
  clearTimeout(state.timer);
  state.timer = null;
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(poll, POLL_MS);
}

// Loads the job list, then polls the chosen job.
async function start() {
  stopPolling();
  try {
    await loadJobs();
  } catch (e) {
    if (e instanceof AuthError) {
      const hadToken = !!sessionStorage.getItem(TOKEN_KEY);
      showSignin(hadToken ? e.message : '');
      return;
    }
    setStatus(false);
    state.timer = setTimeout(start, POLL_MS);
    return;
  }
  document.body.classList.remove('signed-out');
  $('signin').hidden = true;
  $('dashboard').hidden = false;
  $('sign-out').hidden = !sessionStorage.getItem(TOKEN_KEY);
  poll();
}

async function loadJobs() {
  const list = await api('/v1/jobs');
  state.jobs = (list && list.jobs) || [];
  const sel = $('job');
  const ids = state.jobs.map((j) => j.id);
  if (!ids.includes(state.jobId)) resetJob(ids[0] || null);
  sel.innerHTML = state.jobs.map((j) =>
    `<option value="${esc(j.id)}">${esc(j.name || j.id)} (${esc(j.status && j.status.state)})</option>`).join('');
  sel.value = state.jobId || '';
  sel.hidden = state.jobs.length < 2;
}

function resetJob(id) {
  state.jobId = id;
  state.view = null;
  state.prev = null;
  state.rates = null;
  state.selected = null;
  $('operator-detail').hidden = true;
}

async function poll() {
  const gen = state.gen;
  state.polls++;
  try {
    if (state.polls % 10 === 0) await loadJobs();   // pick up new jobs now and then
    if (!state.jobId) {
      renderEmpty();
      setStatus(true, 'no jobs');
    } else {
      const id = state.jobId;
      const view = await api(`/v1/jobs/${encodeURIComponent(id)}/dashboard`);
      if (gen !== state.gen) return;   // job changed or signed out meanwhile
      accept(view);
      setStatus(true);
    }
  } catch (e) {
    if (gen !== state.gen) return;
    if (e instanceof AuthError) { showSignin(e.message); return; }
    setStatus(false);          // keep the last view on screen
  }
  if (gen === state.gen) schedule();
}

function accept(view) {
  const counters = collectCounters(view);
  state.rates = state.prev ? deriveRates(state.prev, counters, view) : null;
  state.prev = counters;
  state.view = view;
  state.updates++;
  const began = performance.now();
  render(view);
  // How long the last redraw took, for tests and the curious.
  document.body.dataset.renderMs = (performance.now() - began).toFixed(1);
  document.body.dataset.batches = String((view.batches || []).length);
  document.body.dataset.updates = String(state.updates);
}

// ---------- rates from counter deltas ----------

function opKey(stage, name) { return stage + '/' + name; }

function collectCounters(v) {
  const c = { t: v.now_ms, src: {}, sink: {}, op: {}, stage: {} };
  for (const s of v.sources || []) c.src[s.name] = { records: s.records, bp: s.backpressured_s || 0 };
  for (const s of v.sinks || []) c.sink[s.name] = { records: s.records };
  for (const st of v.stages || []) {
    c.stage[st.stage] = { busy: st.busy_s || 0, bp: st.backpressured_s || 0 };
    for (const op of st.operators || []) {
      c.op[opKey(st.stage, op.name)] = { in: op.records_in, out: op.records_out };
    }
  }
  return c;
}

function deriveRates(a, b, v) {
  const dt = (b.t - a.t) / 1000;
  if (!(dt > 0)) return null;
  // A counter that went backwards means a new run: no rate for it.
  const per = (x, y) => (x == null || y == null || y < x ? null : (y - x) / dt);
  const clamp = (f) => (f == null ? null : Math.max(0, Math.min(1, f)));
  const workers = Math.max(1, v.workers || 1);
  const r = { src: {}, srcBp: {}, sink: {}, op: {}, busy: {}, bp: {} };
  for (const k in b.src) {
    if (!a.src[k]) continue;
    r.src[k] = per(a.src[k].records, b.src[k].records);
    r.srcBp[k] = clamp(per(a.src[k].bp, b.src[k].bp));
  }
  for (const k in b.sink) if (a.sink[k]) r.sink[k] = per(a.sink[k].records, b.sink[k].records);
  for (const k in b.op) {
    if (a.op[k]) r.op[k] = { in: per(a.op[k].in, b.op[k].in), out: per(a.op[k].out, b.op[k].out) };
  }
  for (const k in b.stage) {
    if (!a.stage[k]) continue;
    const busy = per(a.stage[k].busy, b.stage[k].busy);
    r.busy[k] = clamp(busy == null ? null : busy / workers);
    r.bp[k] = clamp(per(a.stage[k].bp, b.stage[k].bp));
  }
  return r;
}

// ---------- rendering ----------

function render(v) {
  renderHeader(v);
  renderCharts(v);
  renderBatches(v);
  renderGraph(v);
  renderDetail(v);
  renderKafkaLag(v);
  renderWatermarks(v);
  renderDeadLetters(v);
  renderVersions(v);
  renderCheckpoints(v);
}

function renderEmpty() {
  $('dashboard').hidden = false;
  $('job-name').textContent = 'no jobs';
  $('job-state').textContent = '—';
}

function renderHeader(v) {
  $('job-name').textContent = v.job;
  const st = $('job-state');
  st.textContent = v.state;
  st.className = 'state ' + v.state;
  $('uptime').textContent = 'up ' + fmtDuration(v.now_ms - v.started_ms);
  document.title = `${v.job} · Sluice`;
  const t = v.totals || {};
  const items = [
    ['records in', fmtInt(t.records_in)],
    ['bytes in', fmtBytes(t.bytes_in)],
    ['records out', fmtInt(t.records_out)],
    ['batches', fmtInt(t.batches)],
    ['dead-lettered', fmtInt(t.dead_lettered), t.dead_lettered > 0 ? 'warn' : ''],
    ['late', fmtInt(t.late)],
    ['skipped', fmtInt(t.skipped)],
    ['interval', v.interval_ms == null ? 'by size' : fmtMs(v.interval_ms)],
    ['partitions', fmtInt(v.partitions)],
    ['workers', fmtInt(v.workers)],
  ];
  $('totals').innerHTML = items.map(([k, val, cls]) =>
    `<div class="total ${cls || ''}"><div class="v">${esc(val)}</div><div class="k">${esc(k)}</div></div>`).join('');
}

// The per-batch series: [cut_ms, value] pairs.
function batchSeries(v) {
  const b = v.batches || [];
  const rate = [], sched = [], proc = [], total = [];
  for (let i = 0; i < b.length; i++) {
    const x = b[i];
    let secs = v.interval_ms != null ? v.interval_ms / 1000
      : i > 0 ? (x.cut_ms - b[i - 1].cut_ms) / 1000 : null;
    if (secs != null && secs > 0) rate.push([x.cut_ms, x.records / secs]);
    sched.push([x.cut_ms, x.scheduling_delay_ms]);
    proc.push([x.cut_ms, x.processing_ms]);
    total.push([x.cut_ms, x.total_delay_ms]);
  }
  return { rate, sched, proc, total };
}

function renderCharts(v) {
  const s = batchSeries(v);
  const ref = v.interval_ms;
  drawChart($('chart-rate'), s.rate, { unit: 'records/s', fmt: fmtShort });
  drawChart($('chart-scheduling'), s.sched, { unit: 'ms', fmt: fmtShort });
  drawChart($('chart-processing'), s.proc, { unit: 'ms', fmt: fmtShort, ref });
  drawChart($('chart-total'), s.total, { unit: 'ms', fmt: fmtShort, ref });
  $('stat-rate').textContent = seriesStat(s.rate, fmtRate);
  $('stat-scheduling').textContent = seriesStat(s.sched, fmtMs);
  $('stat-processing').textContent = seriesStat(s.proc, fmtMs);
  $('stat-total').textContent = seriesStat(s.total, fmtMs);
}

function seriesStat(pts, fmt) {
  if (!pts.length) return '';
  let sum = 0, max = -Infinity;
  for (const p of pts) { sum += p[1]; if (p[1] > max) max = p[1]; }
  return `latest ${fmt(pts[pts.length - 1][1])} · avg ${fmt(sum / pts.length)} · max ${fmt(max)}`;
}

// A round axis maximum at or above x (1, 2, 2.5, 5 × 10^n).
function niceMax(x) {
  if (!(x > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

// Draws a line chart of [x ms, y] points into an svg (viewBox 560×170).
function drawChart(svg, pts, opt) {
  const W = 560, H = 170, L = 46, R = 12, T = 14, B = 24;
  const pw = W - L - R, ph = H - T - B;
  if (!pts.length) {
    svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" class="empty" text-anchor="middle">no batches yet</text>`;
    return;
  }
  let x0 = pts[0][0], x1 = pts[pts.length - 1][0];
  if (x1 <= x0) { x0 -= 500; x1 += 500; }
  let ymax = 0;
  for (const p of pts) if (p[1] > ymax) ymax = p[1];
  if (opt.ref != null) ymax = Math.max(ymax, opt.ref * 1.15);
  ymax = niceMax(ymax * 1.05);
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y) => T + ph - (Math.max(0, y) / ymax) * ph;
  const out = [];
  // Grid and y labels.
  for (let i = 0; i <= 4; i++) {
    const y = (ymax * i) / 4, py = sy(y).toFixed(1);
    out.push(`<line class="gridline" x1="${L}" x2="${W - R}" y1="${py}" y2="${py}"/>`,
      `<text class="tick" x="${L - 5}" y="${py}" dy="3" text-anchor="end">${esc(opt.fmt(y))}</text>`);
  }
  // X labels: clock times.
  for (let i = 0; i <= 4; i++) {
    const x = x0 + ((x1 - x0) * i) / 4;
    const anchor = i === 0 ? 'start' : i === 4 ? 'end' : 'middle';
    out.push(`<text class="tick" x="${sx(x).toFixed(1)}" y="${H - 7}" text-anchor="${anchor}">${fmtClock(x)}</text>`);
  }
  out.push(`<text class="axis-label" x="${L}" y="9">${esc(opt.unit)}</text>`,
    `<line class="axis" x1="${L}" x2="${W - R}" y1="${T + ph}" y2="${T + ph}"/>`,
    `<line class="axis" x1="${L}" x2="${L}" y1="${T}" y2="${T + ph}"/>`);
  // Series (and its area).
  let d = '';
  for (let i = 0; i < pts.length; i++) {
    d += (i ? 'L' : 'M') + sx(pts[i][0]).toFixed(1) + ' ' + sy(pts[i][1]).toFixed(1);
  }
  const area = `${d}L${sx(pts[pts.length - 1][0]).toFixed(1)} ${T + ph}L${sx(pts[0][0]).toFixed(1)} ${T + ph}Z`;
  out.push(`<path class="area" d="${area}"/>`, `<path class="series" d="${d}"/>`);
  const last = pts[pts.length - 1];
  out.push(`<circle class="dot" r="3" cx="${sx(last[0]).toFixed(1)}" cy="${sy(last[1]).toFixed(1)}"/>`);
  // The batch interval, dashed.
  if (opt.ref != null) {
    const py = sy(opt.ref).toFixed(1);
    out.push(`<line class="ref" x1="${L}" x2="${W - R}" y1="${py}" y2="${py}"/>`,
      `<line class="ref" x1="${W - R - 150}" x2="${W - R - 128}" y1="6" y2="6"/>`,
      `<text class="ref-label" x="${W - R}" y="9" text-anchor="end">batch interval ${esc(fmtMs(opt.ref))}</text>`);
  }
  svg.innerHTML = out.join('');
}

function renderBatches(v) {
  const b = (v.batches || []).slice(-20).reverse();
  const ref = v.interval_ms;
  const slow = (ms) => (ref != null && ms > ref ? ' class="over"' : '');
  $('batches').tBodies[0].innerHTML = b.length ? b.map((x) =>
    `<tr class="batch-row" data-batch="${x.batch}"><td>${x.batch}</td><td>${fmtInt(x.records)}</td>` +
    `<td>${fmtMs(x.scheduling_delay_ms)}</td><td${slow(x.processing_ms)}>${fmtMs(x.processing_ms)}</td>` +
    `<td>${fmtMs(x.total_delay_ms)}</td></tr>`).join('')
    : '<tr><td colspan="5" class="muted">no batches yet</td></tr>';
}

// Sum of an operator's breach counters.
function breachCount(op) {
  let n = 0;
  for (const k in op.breaches || {}) n += op.breaches[k] || 0;
  return n;
}

function errorsHtml(op) {
  const parts = [];
  if (op.rejected) parts.push(`rejected ${fmtShort(op.rejected)}`);
  if (op.traps) parts.push(`traps ${fmtShort(op.traps)}`);
  if (op.restarts) parts.push(`restarts ${fmtShort(op.restarts)}`);
  for (const k in op.breaches || {}) if (op.breaches[k]) parts.push(`${k} breaches ${fmtShort(op.breaches[k])}`);
  if (op.dead_letters) parts.push(`dead letters ${fmtShort(op.dead_letters)}`);
  return parts.length ? `<div class="errors">${parts.map(esc).join(' · ')}</div>` : '';
}

function renderGraph(v) {
  const r = state.rates;
  const sel = state.selected;
  const col = [];
  col.push('<div class="col sources"><div class="col-title">sources</div>' +
    (v.sources || []).map((s) =>
      `<div class="node" data-kind="source" data-name="${esc(s.name)}">` +
      `<div class="n-name">${esc(s.name)} <span class="kind">${esc(s.kind)}</span></div>` +
      `<div class="n-rate">${fmtRate(r && r.src[s.name])}</div>` +
      `<div class="n-sub">${fmtInt(s.records)} rec · ${fmtBytes(s.bytes)}</div>` +
      (r && r.srcBp[s.name] > 0 ? shareBadge('bp', r.srcBp[s.name]) : '') + '</div>').join('') + '</div>');
  for (const st of v.stages || []) {
    const label = st.keyed ? 'exchange' : 'forward';
    col.push(`<div class="edge ${st.keyed ? 'keyed' : ''}"><span>${label}</span></div>`);
    const busy = r ? r.busy[st.stage] : null, bp = r ? r.bp[st.stage] : null;
    const ops = (st.operators || []).map((op) => {
      const or = r && r.op[opKey(st.stage, op.name)];
      const isSel = sel && sel.stage === st.stage && sel.name === op.name;
      const bad = op.rejected || op.traps || breachCount(op) || op.dead_letters;
      return `<div class="node op${isSel ? ' selected' : ''}${bad ? ' has-errors' : ''}" data-kind="operator" ` +
        `data-name="${esc(op.name)}" data-stage="${st.stage}" tabindex="0">` +
        `<div class="n-name">${esc(op.name)} <span class="kind">${esc(op.kind)} v${esc(op.version)}</span></div>` +
        `<div class="n-rate">${fmtRate(or && or.in)} <span class="muted">in</span> · ${fmtRate(or && or.out)} <span class="muted">out</span></div>` +
        `<div class="n-shares">${shareBadge('busy', busy)}${shareBadge('bp', bp)}</div>` +
        errorsHtml(op) + '</div>';
    }).join('');
    const tags = [st.keyed ? 'keyed' : '', st.stateful ? 'stateful' : ''].filter(Boolean).join(' · ');
    col.push(`<div class="col stage" data-stage="${st.stage}"><div class="col-title">stage ${st.stage}` +
      `${tags ? ` <span class="muted">${tags}</span>` : ''}</div>` +
      `<div class="stage-shares">${shareBadge('busy', busy)}${shareBadge('bp', bp)}</div>${ops}</div>`);
  }
  col.push('<div class="edge"><span></span></div>');
  col.push('<div class="col sinks"><div class="col-title">sinks</div>' +
    (v.sinks || []).map((s) =>
      `<div class="node" data-kind="sink" data-name="${esc(s.name)}">` +
      `<div class="n-name">${esc(s.name)} <span class="kind">${esc(s.kind)}</span></div>` +
      `<div class="n-rate">${fmtRate(r && r.sink[s.name])}</div>` +
      `<div class="n-sub">${fmtInt(s.records)} rec · ${fmtBytes(s.bytes)}</div></div>`).join('') + '</div>');
  $('graph').innerHTML = col.join('');
}

function onGraphClick(ev) {
  const node = ev.target.closest('.node[data-kind="operator"]');
  if (!node) return;
  state.selected = { stage: Number(node.dataset.stage), name: node.dataset.name };
  $('operator-detail').hidden = false;
  if (state.view) { renderGraph(state.view); renderDetail(state.view); }
  $('operator-detail').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
}

function closeDetail() {
  state.selected = null;
  $('operator-detail').hidden = true;
  if (state.view) renderGraph(state.view);
}

function findOperator(v, sel) {
  for (const st of v.stages || []) {
    if (st.stage !== sel.stage) continue;
    for (const op of st.operators || []) if (op.name === sel.name) return { st, op };
  }
  return null;
}

function renderDetail(v) {
  const panel = $('operator-detail');
  if (!state.selected) { panel.hidden = true; return; }
  const found = findOperator(v, state.selected);
  if (!found) { $('detail-body').innerHTML = '<p class="muted">operator not in this view</p>'; return; }
  const { st, op } = found;
  $('detail-title').textContent = `${op.name} · ${op.kind} · stage ${st.stage} · version ${op.version}`;
  const or = state.rates && state.rates.op[opKey(st.stage, op.name)];
  const counters = [
    ['records in', fmtInt(op.records_in)], ['records out', fmtInt(op.records_out)],
    ['rate in', fmtRate(or && or.in)], ['rate out', fmtRate(or && or.out)],
    ['bytes in', fmtBytes(op.bytes_in)], ['bytes out', fmtBytes(op.bytes_out)],
    ['rejected', fmtInt(op.rejected)], ['traps', fmtInt(op.traps)],
    ['restarts', fmtInt(op.restarts)], ['dead letters', fmtInt(op.dead_letters)],
    ['late', fmtInt(op.late)], ['version', esc(op.version)],
  ];
  for (const k in op.breaches || {}) counters.push([k + ' breaches', fmtInt(op.breaches[k])]);
  $('detail-body').innerHTML =
    '<div class="detail-grid">' +
    `<div><h3>Counters</h3><dl class="counters">${counters.map(([k, x]) =>
      `<div><dt>${esc(k)}</dt><dd>${x}</dd></div>`).join('')}</dl></div>` +
    `<div><h3>Call time</h3>${callHistogram(op.call)}</div>` +
    `<div><h3>Limits</h3>${limitsHtml(op.limits)}</div>` +
    `<div class="span2"><h3>Partitions</h3>${partitionsHtml(op.partitions)}</div>` +
    '</div>';
}

// Bucket bound (seconds) as a short label.
function boundLabel(b) {
  const n = Number(b);
  return isFinite(n) ? '≤' + fmtSeconds(n).replace(' ', '') : '+Inf';
}

// The call-time histogram: cumulative buckets → bars of per-bucket counts.
function callHistogram(call) {
  if (!call || !call.count) return '<p class="muted">no calls yet</p>';
  const buckets = call.buckets || [];
  const counts = buckets.map((b, i) => Math.max(0, b[1] - (i ? buckets[i - 1][1] : 0)));
  const max = Math.max(1, ...counts);
  const W = 420, H = 170, B = 44, T = 14, n = Math.max(1, counts.length), bw = W / n;
  const bars = counts.map((c, i) => {
    const h = (c / max) * (H - B - T), cx = (i * bw + bw / 2).toFixed(1);
    const x = (i * bw + 1).toFixed(1), y = (H - B - h).toFixed(1);
    return `<rect class="hbar" x="${x}" y="${y}" width="${Math.max(1, bw - 2).toFixed(1)}" height="${h.toFixed(1)}">` +
      `<title>${boundLabel(buckets[i][0])}: ${c}</title></rect>` +
      (c ? `<text class="tick" x="${cx}" y="${(H - B - h - 3).toFixed(1)}" text-anchor="middle">${fmtShort(c)}</text>` : '') +
      `<text class="tick" transform="translate(${cx} ${H - B + 10}) rotate(-35)" text-anchor="end">${esc(boundLabel(buckets[i][0]))}</text>`;
  }).join('');
  const mean = call.sum_s / call.count;
  return `<svg class="hist" viewBox="-26 -6 ${W + 30} ${H + 6}">${bars}` +
    `<line class="axis" x1="0" x2="${W}" y1="${H - B}" y2="${H - B}"/>` +
    `<text class="axis-label" x="${W}" y="10" text-anchor="end">calls per bucket (upper bound)</text></svg>` +
    `<p class="muted small">${fmtInt(call.count)} calls · mean ${fmtSeconds(mean)} · max ${fmtSeconds(call.max_s)} · total ${fmtSeconds(call.sum_s)}</p>`;
}

// Formats a limit's used value in the unit its configured value is written in.
function fmtLimit(l, x) {
  const unit = String(l.value || '');
  if (/i?B$/.test(unit)) return fmtBytes(x);
  if (/\d\s*(ms|s|µs|us)$/.test(unit)) return fmtSeconds(x);
  return fmtShort(x);
}

function limitsHtml(limits) {
  if (!limits || !limits.length) return '<p class="muted">no limits</p>';
  return '<table class="limits"><tbody>' + limits.map((l) => {
    const f = l.allowed > 0 ? l.used / l.allowed : 0;
    const cls = f >= 0.9 ? 'high' : f >= 0.5 ? 'low' : 'ok';
    return `<tr><td>${esc(l.limit)}</td><td class="barcell">${bar(f, cls)}</td>` +
      `<td class="num">${esc(fmtLimit(l, l.used))} / ${esc(l.value)} <span class="muted">(${fmtPct(f)})</span></td></tr>`;
  }).join('') + '</tbody></table>';
}

// Per-partition records: a skew strip of all partitions plus a grid of cells
// (8 or so per row, so 64 partitions stay on a few lines).
function partitionsHtml(parts) {
  if (!parts || !parts.length) return '<p class="muted">no partitions</p>';
  let max = 1, maxIn = 0, sum = 0;
  for (const p of parts) {
    max = Math.max(max, p.records_in, p.records_out);
    maxIn = Math.max(maxIn, p.records_in);
    sum += p.records_in;
  }
  const W = 720, H = 50, n = parts.length, bw = W / n, half = Math.max(1, bw / 2 - 0.5).toFixed(1);
  const strip = parts.map((p, i) => {
    const hi = (p.records_in / max) * (H - 2), ho = (p.records_out / max) * (H - 2), x = i * bw;
    return `<rect class="pin" x="${(x + 0.5).toFixed(1)}" y="${(H - hi).toFixed(1)}" width="${half}" height="${hi.toFixed(1)}"/>` +
      `<rect class="pout" x="${(x + bw / 2).toFixed(1)}" y="${(H - ho).toFixed(1)}" width="${half}" height="${ho.toFixed(1)}"/>`;
  }).join('');
  const mean = sum / n;
  const cells = parts.map((p) => {
    const hot = p.records_in > 1.5 * mean ? ' hot' : '';
    return `<div class="pcell${hot}" title="partition ${p.partition}: in ${fmtInt(p.records_in)}, out ${fmtInt(p.records_out)}">` +
      `<span class="pn">${p.partition}</span><span class="pv">${fmtShort(p.records_in)} → ${fmtShort(p.records_out)}</span>` +
      `${bar(p.records_in / max, hot ? 'low' : '')}</div>`;
  }).join('');
  return `<svg class="strip" viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">${strip}</svg>` +
    `<p class="muted small"><span class="key pin"></span>in <span class="key pout"></span>out · ${n} partitions · ` +
    `records in: mean ${fmtShort(mean)}, max ${fmtShort(maxIn)} (skew ×${(maxIn / Math.max(1, mean)).toFixed(2)}) · ` +
    `cells: partition, records in → out</p><div class="pgrid">${cells}</div>`;
}

function renderKafkaLag(v) {
  const lag = v.kafka_lag || [];
  if (!lag.length) {
    $('kafka-lag').innerHTML = '<p class="muted">no Kafka source</p>';
    $('stat-lag').textContent = '';
    return;
  }
  let max = 1, total = 0;
  for (const l of lag) { max = Math.max(max, l.lag); total += l.lag; }
  $('stat-lag').textContent = `total ${fmtShort(total)} · max ${fmtShort(max)}`;
  $('kafka-lag').innerHTML = '<div class="scroll short"><table class="compact"><thead><tr><th>topic</th><th>#</th><th>lag</th><th></th></tr></thead><tbody>' +
    lag.map((l) => `<tr><td>${esc(l.topic)}</td><td>${l.partition}</td><td class="num">${fmtInt(l.lag)}</td>` +
      `<td class="barcell">${bar(l.lag / max)}</td></tr>`).join('') + '</tbody></table></div>';
}

function renderWatermarks(v) {
  const w = v.watermarks || [];
  $('watermarks').innerHTML = !w.length ? '<p class="muted">no event-time streams</p>' :
    '<table class="compact"><thead><tr><th>stage</th><th>stream</th><th>event time</th><th>watermark</th><th>lag</th></tr></thead><tbody>' +
    w.map((x) => `<tr><td>${x.stage}</td><td>${esc(x.stream)}</td><td>${fmtClock(x.event_time_ms)}</td>` +
      `<td>${fmtClock(x.watermark_ms)}</td><td class="num">${x.lag_ms == null ? '—' : fmtMs(x.lag_ms)}</td></tr>`).join('') +
    '</tbody></table>';
}

function renderDeadLetters(v) {
  const d = (v.dead_letters || []).slice().reverse();
  $('dead-letters').innerHTML = !d.length ? '<p class="muted">none</p>' :
    '<div class="scroll"><table class="compact letters"><thead><tr><th>operator</th><th>reason</th><th>batch</th><th>part.</th><th>value</th></tr></thead><tbody>' +
    d.map((x) => `<tr><td>${esc(x.operator)}</td><td class="reason">${esc(x.reason)}</td><td>${x.batch}</td>` +
      `<td>${x.partition == null ? '—' : x.partition}</td><td><code>${esc(x.value)}</code></td></tr>`).join('') +
    '</tbody></table></div>';
}

function versionOutcome(e) {
  return e.rolled_back ? 'rolled-back' : e.adopted ? 'adopted' : 'refused';
}

function renderVersions(v) {
  const ev = v.versions || [];
  if (!ev.length) { $('versions').innerHTML = '<p class="muted">no hot reloads</p>'; return; }
  const W = 480, H = 54, L = 8, R = 8;
  const t0 = Math.min(v.started_ms, ev[0].at_ms), t1 = Math.max(v.now_ms, ev[ev.length - 1].at_ms);
  const sx = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const marks = ev.map((e) =>
    `<g class="mark ${versionOutcome(e)}"><title>${esc(fmtClock(e.at_ms))} ${esc(e.operator)} v${e.version}: ` +
    `${versionOutcome(e)} — ${esc(e.detail)}</title><circle cx="${sx(e.at_ms).toFixed(1)}" cy="22" r="6"/></g>`).join('');
  const svg = `<svg class="timeline" viewBox="0 0 ${W} ${H}">` +
    `<line class="axis" x1="${L}" x2="${W - R}" y1="22" y2="22"/>${marks}` +
    `<text class="tick" x="${L}" y="${H - 4}">${fmtClock(t0)} (start)</text>` +
    `<text class="tick" x="${W - R}" y="${H - 4}" text-anchor="end">${fmtClock(t1)} (now)</text></svg>`;
  const legend = '<div class="legend"><span class="key adopted"></span>adopted <span class="key refused"></span>refused ' +
    '<span class="key rolled-back"></span>rolled back</div>';
  const list = '<ul class="events">' + ev.slice().reverse().map((e) =>
    `<li><span class="tag ${versionOutcome(e)}">${versionOutcome(e).replace('-', ' ')}</span> ` +
    `<b>${esc(e.operator)}</b> v${e.version} at batch ${e.batch} <span class="muted">${fmtClock(e.at_ms)}</span>` +
    `<div class="muted small">${esc(e.detail)}</div></li>`).join('') + '</ul>';
  $('versions').innerHTML = svg + legend + list;
}

function renderCheckpoints(v) {
  const c = v.checkpoints;
  $('checkpoints').innerHTML = !c ? '<p class="muted">no checkpoints</p>' :
    '<dl class="counters">' + [
      ['taken', fmtInt(c.count)], ['last batch', fmtInt(c.last_batch)],
      ['last size', fmtBytes(c.last_bytes)], ['last took', fmtMs(c.last_ms)],
      ['age', c.age_s == null ? '—' : fmtSeconds(c.age_s)],
    ].map(([k, x]) => `<div><dt>${k}</dt><dd>${x}</dd></div>`).join('') + '</dl>';
}

// ---------- wiring ----------

function init() {
  $('signin').addEventListener('submit', onSignin);
  $('sign-out').addEventListener('click', onSignout);
  $('graph').addEventListener('click', onGraphClick);
  $('graph').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') onGraphClick(ev); });
  $('close-detail').addEventListener('click', closeDetail);
  $('job').addEventListener('change', (ev) => {
    resetJob(ev.target.value);
    stopPolling();
    poll();
  });
  start();
}

init();
