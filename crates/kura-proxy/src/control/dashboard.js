// kura's dashboard: polls the admin API's JSON endpoints and renders them.
//
// Everything read from the API goes into the page as text (textContent, or DOM properties and
// attributes set one by one): vhost names, paths and backend URLs come from clients, Redis
// writers and configuration files, and must never be parsed as markup. When reads need the
// admin token, the page asks for it once and keeps it in sessionStorage (this tab only); it is
// sent as an Authorization header, never in a URL.
'use strict';

(function () {
  const REFRESH_MS = 2000;
  const TOKEN_KEY = 'kura-admin-token';
  const MAX_BACKEND_ROWS = 300;
  const MAX_SHADOW_ROWS = 50;
  const SVG = 'http://www.w3.org/2000/svg';
  const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

  const $ = (id) => document.getElementById(id);
  let refreshes = 0;
  let timer = null;
  let busy = false;

  // ----- small helpers -------------------------------------------------------------------

  /** An element with a class and text or children (strings become text nodes). */
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function setText(id, value) {
    const e = $(id);
    if (e) e.textContent = value === null || value === undefined ? '—' : String(value);
  }

  function num(v) {
    return typeof v === 'number' && Number.isFinite(v) ? v : 0;
  }

  function count(v) {
    return String(Math.round(num(v)));
  }

  function bytes(v) {
    let n = num(v);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
  }

  function percent(part, whole) {
    return whole > 0 ? ((100 * part) / whole).toFixed(1) + '%' : '—';
  }

  function duration(seconds) {
    let s = Math.floor(num(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d > 0) return d + 'd ' + h + 'h ' + m + 'm';
    if (h > 0) return h + 'h ' + m + 'm';
    if (m > 0) return m + 'm ' + s + 's';
    return s + 's';
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  // ----- fetching ------------------------------------------------------------------------

  class NeedToken extends Error {}

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  /** GETs `path` from this admin listener; null for a 404 (e.g. no cluster configured). */
  async function get(path) {
    const headers = { Accept: 'application/json' };
    const token = storedToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    const r = await fetch(path, { headers, cache: 'no-store', credentials: 'omit', redirect: 'error' });
    if (r.status === 401) throw new NeedToken(token ? 'The token was refused.' : '');
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(path + ' answered ' + r.status);
    return r.json();
  }

  function askToken(message) {
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage off: the token is asked again */ }
    $('token-message').textContent = message || 'This kura needs its admin token to be read.';
    $('token-form').hidden = false;
    $('panels').hidden = true;
    document.body.dataset.state = 'token';
    $('token').focus();
  }

  function onToken(ev) {
    ev.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch (_) {
      $('token-message').textContent = 'This browser keeps no session storage: the token cannot be kept.';
      return;
    }
    $('token').value = '';
    $('token-form').hidden = true;
    $('panels').hidden = false;
    schedule(0);
  }

  function schedule(ms) {
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(refresh, ms);
  }

  async function refresh() {
    timer = null;
    if (busy) return;
    busy = true;
    let next = REFRESH_MS;
    try {
      const status = await get('/status');
      // /cluster answers 404 without a cluster: not asked then (browsers log every 404).
      const [traffic, backends, cache, cluster, shadow] = await Promise.all(
        ['/traffic', '/backends', '/cache', status && status.cluster ? '/cluster' : null, '/shadow']
          .map((p) => (p ? get(p) : null)));
      renderStatus(status);
      renderTraffic(traffic);
      renderBackends(backends);
      renderCache(cache);
      renderCluster(cluster);
      renderShadow(shadow);
      $('error').hidden = true;
      setText('refreshed', new Date().toLocaleTimeString());
      refreshes += 1;
      document.body.dataset.refreshes = String(refreshes);
      document.body.dataset.state = 'ready';
    } catch (e) {
      if (e instanceof NeedToken) {
        askToken(e.message);
        next = null;
      } else {
        $('error').textContent = 'Could not read the admin API: ' + (e && e.message ? e.message : String(e));
        $('error').hidden = false;
        document.body.dataset.state = 'error';
      }
    } finally {
      busy = false;
    }
    if (next !== null) schedule(next);
  }

  // ----- status --------------------------------------------------------------------------

  function connection(id, state, extra) {
    const e = clear($(id));
    if (state === null || state === undefined) {
      e.append(el('span', 'off', 'not configured'));
      return;
    }
    e.append(state.connected ? el('span', 'ok', 'connected') : el('span', 'bad', 'disconnected'));
    if (extra) e.append(el('span', 'off', ' ' + extra));
  }

  function renderStatus(s) {
    if (!s) return;
    setText('version', s.version);
    setText('uptime', duration(s.uptime_seconds));
    $('uptime').title = 'since ' + new Date(num(s.started_ms)).toISOString();
    setText('generation', s.config_generation);
    connection('redis-state', s.redis, s.redis ? count(s.redis.frontends) + ' frontends' : '');
    connection('etcd-state', s.etcd, '');
  }

  // ----- traffic -------------------------------------------------------------------------

  function mixBar(window) {
    const total = CLASSES.reduce((a, c) => a + num(window[c]), 0);
    const bar = el('div', 'mix');
    const words = [];
    CLASSES.forEach((c, i) => {
      const n = num(window[c]);
      if (n === 0) return;
      const part = el('span', 'c' + (i + 1));
      part.style.width = ((100 * n) / total).toFixed(2) + '%';
      part.title = c + ': ' + n;
      bar.append(part);
      words.push(c + ' ' + n);
    });
    return [bar, el('div', 'mix-text', words.length ? words.join(' · ') : 'no requests')];
  }

  function sparkline(series) {
    // One value (a page on a kura younger than one interval) is drawn as a level line.
    const values = series.length === 1 ? [series[0], series[0]] : series;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', '0 0 120 24');
    svg.setAttribute('preserveAspectRatio', 'none');
    const max = Math.max(1e-9, ...values);
    const step = values.length > 1 ? 120 / (values.length - 1) : 0;
    const points = values.map((v, i) => (i * step).toFixed(1) + ',' + (23 - (22 * v) / max).toFixed(1));
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', points.join(' '));
    svg.append(line);
    return svg;
  }

  function trafficRow(v, samples, other) {
    const per = Array.isArray(v.per_sample) ? v.per_sample : [];
    const rates = per.map((n, i) => num(n) / Math.max(0.001, num(samples[i] && samples[i].seconds)));
    // The last sample is the interval still running: the rate now is the last full one.
    const now = rates.length > 1 ? rates[rates.length - 2] : (rates[0] || 0);
    const windowTotal = CLASSES.reduce((a, c) => a + num(v.window && v.window[c]), 0);
    const name = other ? 'other vhosts (' + count(v.vhosts) + ')' : v.name;
    const tr = el('tr', other ? 'other' : '');
    if (!other) tr.dataset.vhost = String(v.name);
    tr.append(
      el('td', 'name', name),
      el('td', 'num rate', now.toFixed(1)),
      el('td', '', sparkline(rates)),
      el('td', 'mix-cell', ...mixBar(v.window || {})),
      el('td', 'num window', String(windowTotal)),
      el('td', 'num requests', count(v.requests)),
    );
    return tr;
  }

  function renderTraffic(t) {
    if (!t) return;
    const samples = Array.isArray(t.samples) ? t.samples : [];
    const seconds = samples.reduce((a, s) => a + num(s.seconds), 0);
    setText('traffic-window', duration(seconds));
    setText('traffic-interval', t.interval_seconds);
    const body = clear($('traffic-rows'));
    for (const v of t.vhosts || []) body.append(trafficRow(v, samples, false));
    const other = t.other || {};
    if (num(other.vhosts) > 0) body.append(trafficRow(other, samples, true));
    if (body.children.length === 0) {
      const td = el('td', 'note', 'No requests yet.');
      td.colSpan = 6;
      body.append(el('tr', '', td));
    }
  }

  // ----- backends ------------------------------------------------------------------------

  function renderBackends(b) {
    if (!b) return;
    const body = clear($('backend-rows'));
    const rows = [];
    for (const [pool, p] of Object.entries(b.pools || {})) {
      for (const be of (p && p.backends) || []) rows.push([pool, be]);
    }
    // Dead backends first: they are what an operator opens the page for.
    rows.sort((a, b2) => Number(a[1].alive) - Number(b2[1].alive));
    for (const [pool, be] of rows.slice(0, MAX_BACKEND_ROWS)) {
      const why = [];
      if (be.health_check_down) why.push('health check failing');
      if (num(be.dead_for_ms) > 0) why.push('marked dead, ' + (num(be.dead_for_ms) / 1000).toFixed(1) + ' s left');
      const tr = el('tr', be.alive ? 'alive' : 'dead');
      tr.dataset.pool = pool;
      tr.dataset.backend = String(be.url);
      tr.append(
        el('td', 'name', pool),
        el('td', 'name', String(be.url)),
        el('td', 'state', be.alive ? 'alive' : 'dead'),
        el('td', 'why', why.join('; ')),
        el('td', 'num', count(be.in_flight)),
        el('td', 'num', count(be.idle_connections)),
        el('td', 'num', count(be.connections_opened)),
      );
      body.append(tr);
    }
    const more = $('backends-more');
    more.hidden = rows.length <= MAX_BACKEND_ROWS;
    more.textContent = (rows.length - MAX_BACKEND_ROWS) + ' more backends not shown (see /backends).';
    if (rows.length === 0) {
      const td = el('td', 'note', 'No pools.');
      td.colSpan = 7;
      body.append(el('tr', '', td));
    }
  }

  // ----- cache ---------------------------------------------------------------------------

  function gauge(used, max, cleaned) {
    const g = el('div', 'gauge');
    if (!(num(max) > 0)) return g;
    const scale = Math.max(num(max), num(used)) * 1.05;
    const part = el('div', 'used');
    part.style.width = Math.min(100, (100 * num(used)) / scale).toFixed(2) + '%';
    g.append(part);
    if (cleaned !== null && cleaned !== undefined) {
      const m = el('div', 'mark cleaned');
      m.style.left = ((100 * num(cleaned)) / scale).toFixed(2) + '%';
      m.title = 'cleaning stops at ' + bytes(cleaned);
      g.append(m);
    }
    const m = el('div', 'mark max');
    m.style.left = ((100 * num(max)) / scale).toFixed(2) + '%';
    m.title = (cleaned !== null && cleaned !== undefined ? 'cleaning starts above ' : 'size ') + bytes(max);
    g.append(m);
    return g;
  }

  function renderCache(c) {
    if (!c) return;
    const hits = num(c.hits_memory) + num(c.hits_disk) + num(c.hits_other);
    const lookups = hits + num(c.misses);
    setText('cache-hit-ratio', percent(hits, lookups));
    setText('cache-hits', count(hits));
    setText('cache-misses', count(c.misses));
    setText('cache-passes', count(c.passes));
    setText('cache-stored', count(c.stored));
    setText('cache-origin-fetches', count(c.origin_fetches));
    setText('cache-origin-bytes', bytes(c.origin_bytes));
    const body = clear($('cache-tiers'));
    const tiers = [
      ['memory', c.hits_memory, c.memory_bytes, c.memory_max_bytes, null],
      ['disk', c.hits_disk, c.disk_bytes, c.disk_max_bytes, c.disk_cleaned_bytes],
    ];
    for (const [tier, h, used, max, cleaned] of tiers) {
      const configured = max !== null && max !== undefined;
      const tr = el('tr', configured ? '' : 'off');
      tr.dataset.tier = tier;
      const size = configured ? bytes(used) + ' of ' + bytes(max) : 'not configured';
      tr.append(
        el('td', '', tier),
        el('td', 'num hits', count(h)),
        el('td', 'num', percent(num(h), hits)),
        el('td', 'bytes', size),
        el('td', '', configured ? gauge(used, max, cleaned) : null),
      );
      body.append(tr);
    }
    const marks = $('cache-disk-marks');
    marks.textContent = c.disk_max_bytes !== null && c.disk_max_bytes !== undefined
      ? 'Disk cleaning starts above ' + bytes(c.disk_max_bytes) + ' (red mark) and stops at ' +
        bytes(c.disk_cleaned_bytes) + ' (green mark); ' + count(c.disk_evictions) +
        ' objects cleaned, ' + count(c.corrupt) + ' corrupt entries dropped.'
      : 'No disk tier.';
  }

  // ----- cluster -------------------------------------------------------------------------

  function renderCluster(c) {
    $('cluster-none').hidden = c !== null;
    $('cluster-body').hidden = c === null;
    if (!c) return;
    setText('cluster-me', c.me);
    setText('cluster-changes', count(c.membership_changes));
    setText('cluster-peer-answers', count(c.peer_answers));
    setText('cluster-peer-bytes', bytes(c.peer_bytes));
    const errors = Object.entries(c.peer_errors || {}).map(([k, v]) => k + ' ' + count(v));
    setText('cluster-peer-errors', errors.join(', '));
    setText('cluster-served', count(c.served));
    setText('cluster-refused', count(c.refused));
    setText('cluster-origin-fetches', count(c.origin_fetches));
    const down = new Set(c.down || []);
    const list = clear($('cluster-members'));
    for (const m of c.members || []) {
      const cls = [down.has(m) ? 'down' : 'up', m === c.me ? 'me' : ''].join(' ').trim();
      const li = el('li', cls, String(m), down.has(m) ? ' (down)' : '');
      li.dataset.member = String(m);
      list.append(li);
    }
  }

  // ----- shadow --------------------------------------------------------------------------

  /** The median of both sides and the verdict, e.g. "12.0 → 15.6 ms (+30.0%, slower)". */
  function latencyCell(l) {
    if (!l || !l.p50) return el('td', 'latency off', '—');
    const q = l.p50;
    const change = typeof q.change_percent === 'number'
      ? (q.change_percent > 0 ? '+' : '') + q.change_percent.toFixed(1) + '%, ' : '';
    const td = el('td', 'latency' + (l.verdict === 'slower' ? ' bad' : ''),
      num(q.primary_ms).toFixed(1) + ' → ' + num(q.candidate_ms).toFixed(1) + ' ms (' + change +
      String(l.verdict) + ')');
    td.title = ['p90', 'p99'].filter((k) => l[k]).map((k) => k + ': ' +
      num(l[k].primary_ms).toFixed(1) + ' → ' + num(l[k].candidate_ms).toFixed(1) + ' ms').join(', ');
    return td;
  }

  function renderShadow(s) {
    const body = clear($('shadow-rows'));
    if (!s) return;
    const counters = s.counters || {};
    const dropped = Object.values(counters.dropped || {}).reduce((a, v) => a + num(v), 0);
    const endpoints = ((s.report && s.report.endpoints) || []).slice();
    // Regressions first, then candidates slower at the median, then the endpoints that differ
    // most often.
    const rate = (e) => num(e.differing) / Math.max(1, num(e.compared));
    const slower = (e) => (e.latency && e.latency.verdict === 'slower' ? 1 : 0);
    endpoints.sort((a, b) => num(b.regressions) - num(a.regressions) || slower(b) - slower(a) ||
      rate(b) - rate(a));
    $('shadow-summary').textContent = count(counters.selected) + ' requests selected, ' +
      count(dropped) + ' dropped' + (s.report && s.report.since ? '; report since ' + s.report.since : '') + '.';
    for (const e of endpoints.slice(0, MAX_SHADOW_ROWS)) {
      const tr = el('tr', num(e.regressions) > 0 ? 'regression' : '');
      tr.dataset.endpoint = String(e.endpoint);
      tr.dataset.candidate = String(e.candidate);
      const fields = (e.fields || []).slice(0, 5).map((f) =>
        String(f.field) + ' ' + percent(num(f.differences), num(e.compared)) +
        (f.verdict === 'regression' ? ' (regression)' : ' (noise)'));
      tr.append(
        el('td', 'name', String(e.endpoint)),
        el('td', 'name', String(e.candidate)),
        el('td', 'num', count(e.compared)),
        el('td', 'num', count(e.differing)),
        el('td', 'num regressions' + (num(e.regressions) > 0 ? ' bad' : ''), count(e.regressions)),
        latencyCell(e.latency),
        el('td', 'name fields', fields.join('; ')),
      );
      body.append(tr);
    }
    const more = $('shadow-more');
    more.hidden = endpoints.length <= MAX_SHADOW_ROWS;
    more.textContent = (endpoints.length - MAX_SHADOW_ROWS) + ' more endpoints (see /shadow.html).';
    if (endpoints.length === 0) {
      const td = el('td', 'note', 'No shadow traffic compared.');
      td.colSpan = 7;
      body.append(el('tr', '', td));
    }
  }

  // ----- start ---------------------------------------------------------------------------

  function start() {
    $('token-form').addEventListener('submit', onToken);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') schedule(0);
    });
    schedule(0);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
