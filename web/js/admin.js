// The operator console (admin role): products (create, edit, restock, pause, resume, audit),
// the sale as it happens (available / reserved / sold per product, live from the stream,
// as bars and as a chart over time), and the system's health from GET /api/admin/overview
// (decisions per second, projection lag, the circuit breaker) and the newest dead letters.
//
// The overview is polled every second (it is a snapshot, not a stream); stock comes from
// GET /api/events, or from polling the catalogue when the stream is unavailable.

import { call, currentSession, login, logout, onSessionChange, ApiError } from './api.js';
import { LiveFeed } from './events.js';
import { h, mount, formData } from './dom.js';
import { drawLines, stackedBar, COLORS } from './chart.js';
import { apply, extend, has, language, money, setLanguage, t, when } from './i18n.js';

extend({
  en: {
    'console.brand': 'flashsale console',
    'console.shop': 'Shop',
    'console.login': 'Operator log-in',
    'console.notadmin': 'This account is not an operator (admin role needed).',
    'console.dps': 'Decisions / s',
    'console.total': 'Decisions (total)',
    'console.lag.pg': 'Lag PostgreSQL',
    'console.lag.redis': 'Lag Redis',
    'console.breaker': 'Redis breaker',
    'console.dlq': 'Dead letters',
    'console.unavailable': 'The operations overview is unavailable ({code}).',
    'console.products': 'Products',
    'console.chart': 'Stock during the sale',
    'console.chart.pick': 'Pick a product (Chart) to follow it here.',
    'console.deadletters': 'Recent dead letters',
    'console.deadletters.none': 'None.',
    'console.new': 'New product',
    'console.edit': 'Edit product',
    'console.save': 'Save',
    'console.create': 'Create',
    'console.cancelEdit': 'New instead',
    'console.created': 'Created.',
    'console.saved': 'Saved.',
    'col.name': 'Name',
    'col.price': 'Price',
    'col.status': 'Status',
    'col.stock': 'Stock',
    'col.avail': 'Avail.',
    'col.res': 'Res.',
    'col.sold': 'Sold',
    'col.actions': 'Actions',
    'col.audit': 'Audit',
    'col.at': 'At',
    'col.topic': 'Topic',
    'col.reason': 'Reason',
    'col.key': 'Key',
    'f.name': 'Name',
    'f.description': 'Description',
    'f.price': 'Price (KRW)',
    'f.stock': 'Stock',
    'f.starts': 'Sale starts',
    'f.ends': 'Sale ends (optional)',
    'f.limit': 'Per-person limit (0: none)',
    'act.chart': 'Chart',
    'act.edit': 'Edit',
    'act.restock': 'Restock',
    'act.pause': 'Pause',
    'act.resume': 'Resume',
    'act.audit': 'Audit',
    'audit.running': 'Auditing…',
    'audit.busy': 'Another audit is running.',
    'audit.result': '{verdict}: {n} violation(s), {ms} ms',
    legend: 'available · reserved · sold',
    'series.available': 'available',
    'series.reserved': 'reserved',
    'series.sold': 'sold',
  },
  ko: {
    'console.brand': 'flashsale 운영',
    'console.shop': '상점',
    'console.login': '운영자 로그인',
    'console.notadmin': '운영자 계정이 아닙니다 (admin 권한 필요).',
    'console.dps': '초당 결정',
    'console.total': '누적 결정',
    'console.lag.pg': 'PostgreSQL 지연',
    'console.lag.redis': 'Redis 지연',
    'console.breaker': 'Redis 차단기',
    'console.dlq': '데드 레터',
    'console.unavailable': '운영 현황을 가져올 수 없습니다 ({code}).',
    'console.products': '상품',
    'console.chart': '판매 중 재고 추이',
    'console.chart.pick': '상품의 [차트]를 누르면 여기에 표시됩니다.',
    'console.deadletters': '최근 데드 레터',
    'console.deadletters.none': '없음.',
    'console.new': '새 상품',
    'console.edit': '상품 수정',
    'console.save': '저장',
    'console.create': '등록',
    'console.cancelEdit': '새로 등록하기',
    'console.created': '등록되었습니다.',
    'console.saved': '저장되었습니다.',
    'col.name': '이름',
    'col.price': '가격',
    'col.status': '상태',
    'col.stock': '재고',
    'col.avail': '구매 가능',
    'col.res': '예약',
    'col.sold': '판매',
    'col.actions': '작업',
    'col.audit': '감사',
    'col.at': '시각',
    'col.topic': '토픽',
    'col.reason': '사유',
    'col.key': '키',
    'f.name': '이름',
    'f.description': '설명',
    'f.price': '가격 (원)',
    'f.stock': '재고',
    'f.starts': '판매 시작',
    'f.ends': '판매 종료 (선택)',
    'f.limit': '1인당 한도 (0: 없음)',
    'act.chart': '차트',
    'act.edit': '수정',
    'act.restock': '입고',
    'act.pause': '중지',
    'act.resume': '재개',
    'act.audit': '감사',
    'audit.running': '감사 중…',
    'audit.busy': '다른 감사가 진행 중입니다.',
    'audit.result': '{verdict}: 위반 {n}건, {ms} ms',
    legend: '구매 가능 · 예약 · 판매',
    'series.available': '구매 가능',
    'series.reserved': '예약',
    'series.sold': '판매',
  },
});

const view = document.getElementById('view');
let feed = null;
let timers = [];
const products = new Map(); // id -> product (with live counters)
const series = new Map(); // id -> [{t, available, reserved, sold}]
const dpsSeries = [];
let selected = null;
let editing = null;
// One stream follows at most FOLLOW_MAX products (the server's limit). With more products, the
// stream follows the ones the operator touched last, then those on sale, then the upcoming ones;
// the rest are refreshed from the catalogue every REFRESH_MS.
const FOLLOW_MAX = 50;
const REFRESH_MS = 5000;
let followed = new Set();
const touched = new Map(); // id -> when the operator last acted on it here

function errText(e) {
  const code = e instanceof ApiError ? e.code : 'NETWORK';
  return has(`err.${code}`) ? t(`err.${code}`) : t('err.generic', { code });
}

function setLive(mode) {
  const el = document.getElementById('live');
  el.dataset.mode = mode;
  el.textContent = t(`live.${mode}`);
  document.body.dataset.live = mode;
}

function saleStatus(p, now = Date.now()) {
  if (p.status) return p.status;
  if (p.paused) return 'PAUSED';
  if (Date.parse(p.sale_starts_at) > now) return 'UPCOMING';
  if (p.sale_ends_at && Date.parse(p.sale_ends_at) <= now) return 'ENDED';
  if (p.available <= 0) return 'SOLD_OUT';
  return 'ON_SALE';
}

function stop() {
  if (feed) feed.stop();
  feed = null;
  for (const x of timers) clearInterval(x);
  timers = [];
}

// ---- log-in -------------------------------------------------------------------------------

function loginView(message) {
  stop();
  setLive('off');
  document.getElementById('logout').hidden = true;
  const msg = h('div', { class: 'msg' }, message ? h('p', { class: 'notice error', role: 'alert' }, message) : null);
  const form = h(
    'form',
    { class: 'form', id: 'console-login' },
    h('label', {}, h('span', {}, t('auth.email')), h('input', { name: 'email', type: 'email', required: true, autocomplete: 'username' })),
    h('label', {}, h('span', {}, t('auth.password')), h('input', { name: 'password', type: 'password', required: true, autocomplete: 'current-password' })),
    h('button', { type: 'submit', class: 'primary' }, t('auth.login.submit')),
    msg,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const d = formData(form);
    try {
      const s = await login(d.email, d.password, 'console');
      if (s.role !== 'admin') {
        await logout();
        return loginView(t('console.notadmin'));
      }
      dashboard();
    } catch (err) {
      mount(msg, h('p', { class: 'notice error', role: 'alert' }, errText(err)));
    }
  });
  mount(view, h('h1', {}, t('console.login')), form);
}

// ---- the dashboard ---------------------------------------------------------------------------

function tile(id, label) {
  return h('div', { class: 'tile' }, h('div', { class: 'k' }, t(label)), h('div', { class: 'v', id }, '—'));
}

async function dashboard() {
  stop();
  document.getElementById('logout').hidden = false;
  const spark = h('canvas', { class: 'spark', id: 'dps-spark' });
  const chart = h('canvas', { class: 'chart', id: 'stock-chart' });
  const chartTitle = h('h2', { id: 'chart-title' }, t('console.chart'));
  const note = h('div', { id: 'overview-note' });
  mount(
    view,
    h('div', { class: 'tiles', id: 'tiles' }, tile('dps', 'console.dps'), tile('decisions', 'console.total'), tile('lag-pg', 'console.lag.pg'), tile('lag-redis', 'console.lag.redis'), tile('breaker', 'console.breaker'), tile('dlq', 'console.dlq')),
    note,
    h('section', { class: 'panel' }, spark),
    h(
      'div',
      { class: 'console-grid' },
      h(
        'div',
        {},
        h('section', { class: 'panel', id: 'products-panel' }, h('h2', {}, t('console.products')), h('table', { id: 'products' })),
        h(
          'section',
          { class: 'panel', id: 'chart-panel' },
          chartTitle,
          h('div', { class: 'legend' }, ['available', 'reserved', 'sold'].map((k) => h('span', {}, h('i', { style: `background:${COLORS[k]}` }), t(`series.${k}`)))),
          chart,
          h('p', { class: 'hint', id: 'chart-hint' }, t('console.chart.pick')),
        ),
      ),
      h('div', {}, h('section', { class: 'panel', id: 'form-panel' }), h('section', { class: 'panel', id: 'dl-panel' }, h('h2', {}, t('console.deadletters')), h('table', { id: 'dead-letters' }))),
    ),
  );
  productForm();
  await loadProducts();
  renderProducts();
  follow();
  overview();
  deadLetters();
  timers.push(setInterval(overview, 1000), setInterval(deadLetters, 5000), setInterval(drawChart, 1000), setInterval(refreshUnfollowed, REFRESH_MS));
}

async function overview() {
  const note = document.getElementById('overview-note');
  try {
    const o = (await call('GET', '/api/admin/overview')).body;
    const set = (id, v, state) => {
      const el = document.getElementById(id);
      if (!el) return;
      el.textContent = v;
      if (state) el.dataset.state = state;
    };
    set('dps', (o.decisions_per_second ?? 0).toFixed(1));
    set('decisions', String(o.decisions_total ?? '—'));
    const lag = (v) => (v === null || v === undefined ? '—' : `${v} ms`);
    set('lag-pg', lag(o.projection_lag_ms && o.projection_lag_ms.postgres));
    set('lag-redis', lag(o.projection_lag_ms && o.projection_lag_ms.redis));
    set('breaker', o.breaker ? o.breaker.state : '—', o.breaker ? o.breaker.state : null);
    set('dlq', String(o.dead_letters ? o.dead_letters.total : '—'));
    dpsSeries.push({ t: Date.now(), dps: o.decisions_per_second || 0 });
    if (dpsSeries.length > 300) dpsSeries.shift();
    const spark = document.getElementById('dps-spark');
    if (spark) drawLines(spark, dpsSeries, ['dps'], { axes: false });
    if (note) mount(note);
  } catch (e) {
    if (e.status === 401 || e.status === 403) return loginView(errText(e));
    if (note) mount(note, h('p', { class: 'notice error' }, t('console.unavailable', { code: e.code || 'NETWORK' })));
  }
}

async function deadLetters() {
  const table = document.getElementById('dead-letters');
  if (!table) return;
  try {
    const items = (await call('GET', '/api/admin/dead-letters?limit=10')).body.items;
    if (!items.length) return mount(table, h('tr', {}, h('td', { class: 'hint' }, t('console.deadletters.none'))));
    mount(
      table,
      h('tr', {}, h('th', {}, t('col.at')), h('th', {}, t('col.topic')), h('th', {}, t('col.reason')), h('th', {}, t('col.key'))),
      items.map((d) =>
        h('tr', {}, h('td', {}, when(d.at)), h('td', {}, `${d.source_topic || d.topic} ${d.partition}/${d.offset}`), h('td', {}, d.reason), h('td', {}, h('code', {}, d.key || ''))),
      ),
    );
  } catch (e) {
    mount(table, h('tr', {}, h('td', { class: 'hint' }, t('console.unavailable', { code: e.code || 'NETWORK' }))));
  }
}

// ---- products --------------------------------------------------------------------------------

/** Reads the catalogue; `skip(id)` leaves a product as it is (one the stream follows). Returns
 * the ids it changed or added. */
async function loadProducts(skip = () => false) {
  let cursor = null;
  let n = 0;
  const changed = [];
  do {
    const r = await call('GET', `/api/products?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    for (const p of r.body.items) {
      n += 1;
      if (skip(p.product_id)) continue;
      const old = products.get(p.product_id);
      if (!old || !sameCounts(old, p) || old.name !== p.name || old.paused !== p.paused) changed.push(p.product_id);
      products.set(p.product_id, old ? { ...old, ...p, status: old.status && sameCounts(old, p) ? old.status : undefined } : p);
      record(p.product_id);
    }
    cursor = r.body.next_cursor;
  } while (cursor && n < 500);
  return changed;
}

/** The rows the stream does not follow, from the catalogue (only when there are such rows). */
async function refreshUnfollowed() {
  if (feed && feed.mode !== 'live') return; // polling already reads the whole catalogue
  if (products.size <= followed.size) return;
  try {
    const known = new Set(products.keys());
    const changed = await loadProducts((id) => followed.has(id));
    if (changed.some((id) => !known.has(id))) return renderProducts();
    for (const id of changed) updateRow(id);
  } catch {
    /* the next tick tries again; the overview shows when the API is away */
  }
}

/** The operator acted on a product: the stream follows it from now on. */
function touch(id) {
  touched.set(id, Date.now());
  if (!followed.has(id)) follow();
}

function sameCounts(a, b) {
  return a.available === b.available && a.reserved === b.reserved && a.sold === b.sold && a.stock === b.stock;
}

/** Appends the product's counters to its series when they changed. */
function record(id) {
  const p = products.get(id);
  if (!p) return;
  const s = series.get(id) || [];
  const last = s[s.length - 1];
  if (!last || !sameCounts(last, p)) s.push({ t: Date.now(), available: p.available, reserved: p.reserved, sold: p.sold, stock: p.stock });
  if (s.length > 2000) s.shift();
  series.set(id, s);
}

function renderProducts() {
  const table = document.getElementById('products');
  if (!table) return;
  const rows = [...products.values()].map((p) => productRow(p));
  mount(
    table,
    h(
      'tr',
      {},
      ['col.name', 'col.price', 'col.status'].map((k) => h('th', {}, t(k))),
      ['col.stock', 'col.avail', 'col.res', 'col.sold'].map((k) => h('th', { class: 'num' }, t(k))),
      h('th', {}, ''),
      h('th', {}, t('col.actions')),
      h('th', {}, t('col.audit')),
    ),
    rows,
  );
}

function productRow(p) {
  const status = saleStatus(p);
  const qty = h('input', { type: 'number', min: 1, value: 10, name: 'quantity', 'aria-label': t('act.restock') });
  const verdict = h('span', { class: 'verdict', 'data-role': 'verdict' });
  const act = (label, fn, extra = {}) => h('button', { type: 'button', onclick: fn, ...extra }, t(label));
  return h(
    'tr',
    { dataset: { productId: p.product_id, status }, class: selected === p.product_id ? 'selected' : '' },
    h('td', {}, p.name),
    h('td', { class: 'num' }, money(p.price, p.currency)),
    h('td', {}, h('span', { class: `badge s-${status}`, 'data-role': 'status' }, t(`status.${status}`))),
    h('td', { class: 'num', 'data-role': 'stock' }, p.stock),
    h('td', { class: 'num', 'data-role': 'available' }, p.available),
    h('td', { class: 'num', 'data-role': 'reserved' }, p.reserved),
    h('td', { class: 'num', 'data-role': 'sold' }, p.sold),
    h('td', {}, stackedBar(p)),
    h(
      'td',
      {},
      h(
        'div',
        { class: 'mini' },
        act('act.chart', () => select(p.product_id), { 'data-act': 'chart' }),
        act('act.edit', () => productForm(p), { 'data-act': 'edit' }),
        qty,
        act('act.restock', (e) => control(p, 'restock', { quantity: Number(qty.value) }, e.target), { 'data-act': 'restock' }),
        p.paused || status === 'PAUSED' ? act('act.resume', (e) => control(p, 'resume', undefined, e.target), { 'data-act': 'resume' }) : act('act.pause', (e) => control(p, 'pause', undefined, e.target), { 'data-act': 'pause' }),
      ),
    ),
    h('td', {}, h('div', { class: 'mini' }, act('act.audit', (e) => audit(p, e.target.closest('tr').querySelector('[data-role="verdict"]'), e.target), { 'data-act': 'audit' }), verdict)),
  );
}

/** Redraws a product's row, keeping its audit verdict element (an audit may be writing to it). */
function updateRow(id) {
  const p = products.get(id);
  const old = document.querySelector(`#products tr[data-product-id="${CSS.escape(id)}"]`);
  if (!p || !old) return renderProducts();
  const keep = old.querySelector('[data-role="verdict"]');
  const row = productRow(p);
  row.querySelector('[data-role="verdict"]').replaceWith(keep);
  old.replaceWith(row);
}

async function control(p, what, body, button) {
  button.disabled = true;
  try {
    await call('POST', `/api/products/${encodeURIComponent(p.product_id)}/${what}`, { body });
    touch(p.product_id);
    if (!feed || feed.mode !== 'live') await refreshProduct(p.product_id);
  } catch (e) {
    alert(errText(e));
  } finally {
    button.disabled = false;
  }
}

async function refreshProduct(id) {
  const r = await call('GET', `/api/products/${encodeURIComponent(id)}`);
  products.set(id, { ...products.get(id), ...r.body });
  record(id);
  updateRow(id);
}

async function audit(p, out, button) {
  button.disabled = true;
  out.dataset.verdict = 'RUNNING';
  out.textContent = t('audit.running');
  try {
    const r = await call('POST', '/api/admin/audit', { body: { product_id: p.product_id }, ok: [409] });
    if (r.status === 409) {
      out.dataset.verdict = 'BUSY';
      out.textContent = t('audit.busy');
    } else {
      out.dataset.verdict = r.body.verdict;
      out.textContent = t('audit.result', { verdict: r.body.verdict, n: r.body.violations, ms: r.body.duration_ms });
      out.title = r.body.summary || '';
    }
  } catch (e) {
    out.dataset.verdict = 'ERROR';
    out.textContent = errText(e);
  } finally {
    button.disabled = false;
  }
}

function select(id) {
  selected = id;
  touch(id);
  for (const tr of document.querySelectorAll('#products tr[data-product-id]')) tr.classList.toggle('selected', tr.dataset.productId === id);
  const p = products.get(id);
  document.getElementById('chart-title').textContent = `${t('console.chart')} — ${p ? p.name : id}`;
  document.getElementById('chart-hint').hidden = true;
  drawChart();
}

function drawChart() {
  const c = document.getElementById('stock-chart');
  if (!c || !selected) return;
  const s = series.get(selected) || [];
  // extend the last value to now, so that the time axis moves during a quiet moment
  const last = s[s.length - 1];
  drawLines(c, last ? [...s, { ...last, t: Date.now() }] : s, ['available', 'reserved', 'sold']);
}

/** The products the stream follows, most wanted first (see FOLLOW_MAX). */
function followOrder(now = Date.now()) {
  const weight = (p) => ({ ON_SALE: 2, UPCOMING: 1 })[saleStatus(p, now)] || 0;
  const starts = (p) => Date.parse(p.sale_starts_at) || 0;
  return [...products.values()]
    .sort((a, b) => (touched.get(b.product_id) || 0) - (touched.get(a.product_id) || 0) || weight(b) - weight(a) || starts(b) - starts(a))
    .slice(0, FOLLOW_MAX)
    .map((p) => p.product_id);
}

function follow() {
  if (feed) feed.stop();
  const ids = followOrder();
  followed = new Set(ids);
  feed = new LiveFeed({
    products: ids,
    withOrders: false,
    onMode: setLive,
    onEvent: (name, ev) => {
      if (name !== 'stock' || !products.has(ev.product_id)) return;
      const p = products.get(ev.product_id);
      for (const k of ['available', 'reserved', 'sold', 'stock']) if (typeof ev[k] === 'number') p[k] = ev[k];
      if (ev.sale_status) {
        p.status = ev.sale_status;
        p.paused = ev.sale_status === 'PAUSED';
      }
      record(ev.product_id);
      updateRow(ev.product_id);
      if (ev.product_id === selected) drawChart();
    },
    poll: async () => {
      await loadProducts();
      renderProducts();
    },
  });
}

// ---- create and edit ---------------------------------------------------------------------------

function localInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const off = d.getTimezoneOffset() * 60000;
  return new Date(d.getTime() - off).toISOString().slice(0, 16);
}

function productForm(p = null) {
  editing = p;
  const panel = document.getElementById('form-panel');
  if (!panel) return;
  const msg = h('div', { class: 'msg' });
  const inp = (name, type, label, attrs = {}) => h('label', {}, h('span', {}, t(label)), h(type === 'textarea' ? 'textarea' : 'input', { name, type: type === 'textarea' ? undefined : type, ...attrs }));
  const soon = new Date(Date.now() + 60000).toISOString();
  const form = h(
    'form',
    { class: 'form', id: 'product-form' },
    inp('name', 'text', 'f.name', { required: true, maxlength: 200, value: p ? p.name : '' }),
    inp('description', 'textarea', 'f.description', { rows: 2 }),
    inp('price', 'number', 'f.price', { required: true, min: 0, value: p ? p.price : 129000 }),
    p ? null : inp('stock', 'number', 'f.stock', { required: true, min: 0, value: 100 }),
    inp('sale_starts_at', 'datetime-local', 'f.starts', { required: true, value: localInput(p ? p.sale_starts_at : soon) }),
    inp('sale_ends_at', 'datetime-local', 'f.ends', { value: localInput(p && p.sale_ends_at) }),
    inp('per_user_limit', 'number', 'f.limit', { min: 0, value: p ? p.per_user_limit : 1 }),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, t(p ? 'console.save' : 'console.create')), p ? h('button', { type: 'button', class: 'link', onclick: () => productForm() }, t('console.cancelEdit')) : null),
    msg,
  );
  if (p && p.description) form.querySelector('textarea').value = p.description;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const d = formData(form);
    const body = {
      name: d.name,
      description: d.description || '',
      price: Number(d.price),
      sale_starts_at: new Date(d.sale_starts_at).toISOString(),
      per_user_limit: Number(d.per_user_limit || 0),
    };
    if (d.sale_ends_at) body.sale_ends_at = new Date(d.sale_ends_at).toISOString();
    try {
      if (p) {
        await call('PATCH', `/api/products/${encodeURIComponent(p.product_id)}`, { body });
        await refreshProduct(p.product_id);
        mount(msg, h('p', { class: 'notice ok' }, t('console.saved')));
      } else {
        body.stock = Number(d.stock);
        const r = await call('POST', '/api/products', { body });
        const id = r.body.product_id;
        // 202: accepted, not yet decided: the next GET shows it
        for (let i = 0; i < 20; i++) {
          try {
            await refreshProduct(id);
            break;
          } catch {
            await new Promise((res) => setTimeout(res, 250));
          }
        }
        renderProducts();
        touch(id); // the stream now follows the new product too
        form.reset();
        mount(msg, h('p', { class: 'notice ok', id: 'created', dataset: { productId: id } }, t('console.created')));
      }
    } catch (err) {
      mount(msg, h('p', { class: 'notice error', role: 'alert' }, errText(err)));
    }
  });
  mount(panel, h('h2', {}, t(p ? 'console.edit' : 'console.new')), form);
}

// ---- start ----------------------------------------------------------------------------------------

function start() {
  const s = currentSession();
  if (s && s.role === 'admin') dashboard();
  else loginView();
}

document.getElementById('logout').addEventListener('click', async () => {
  await logout();
  loginView();
});
document.getElementById('lang').addEventListener('click', () => {
  setLanguage(language() === 'ko' ? 'en' : 'ko');
  start();
});
onSessionChange((s) => {
  if (!s) loginView();
});
apply();
start();
