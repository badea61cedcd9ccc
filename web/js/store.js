// The storefront: one page, views chosen by the URL's hash (#/, #/product/ID, #/orders,
// #/wishlist, #/profile, #/login, #/signup, #/verify).
//
// Every view that shows stock or an order follows it live (LiveFeed: the SSE stream, else
// polling) and never needs a reload. The answer to "buy" is shown as the API gives it —
// RESERVED with the payment deadline, a refusal by its code, or the queue position on 202,
// which then turns into the decision when it comes (stream, or a long poll of the order).

import { call, currentSession, login, logout, newKey, onSessionChange, ApiError } from './api.js';
import { LiveFeed } from './events.js';
import { h, mount, formData } from './dom.js';
import { apply, duration, has, language, money, setLanguage, t, when } from './i18n.js';

const view = document.getElementById('view');
let feed = null; // the current view's live feed
let cleanups = [];
// Each route() is one generation; a view whose awaits end after the next route began must
// not draw over it nor open a stream (stale(gen)).
let routeGen = 0;
const stale = (gen) => gen !== routeGen;

// ---- small helpers ---------------------------------------------------------------------

function errText(e) {
  const code = e instanceof ApiError ? e.code : 'NETWORK';
  return has(`err.${code}`) ? t(`err.${code}`) : t('err.generic', { code });
}

function notice(kind, text, attrs = {}) {
  return h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status', ...attrs }, text);
}

/** The sale status a product has now, from its fields (the stream sends it explicitly). */
function saleStatus(p, now = Date.now()) {
  if (p.paused) return 'PAUSED';
  if (Date.parse(p.sale_starts_at) > now) return 'UPCOMING';
  if (p.sale_ends_at && Date.parse(p.sale_ends_at) <= now) return 'ENDED';
  if (p.available <= 0) return 'SOLD_OUT';
  return 'ON_SALE';
}

function setLive(mode) {
  const el = document.getElementById('live');
  el.dataset.mode = mode;
  el.textContent = t(`live.${mode}`);
  document.body.dataset.live = mode;
}

function follow(opts) {
  if (feed) feed.stop();
  feed = new LiveFeed({ ...opts, onMode: setLive });
  return feed;
}

function requireLogin() {
  if (currentSession()) return true;
  sessionStorage.setItem('flashsale.next', location.hash);
  location.hash = '#/login';
  return false;
}

// ---- stock and countdowns --------------------------------------------------------------

function stockBlock(p) {
  const status = p.status || saleStatus(p);
  const pct = p.stock > 0 ? Math.round((100 * p.available) / p.stock) : 0;
  return h(
    'div',
    { class: 'stock', dataset: { productId: p.product_id, available: p.available, status } },
    h('span', { class: `badge s-${status}`, 'data-role': 'status' }, t(`status.${status}`)),
    h('span', { class: 'avail', 'data-role': 'available' }, t('stock.available', { n: p.available })),
    h('span', { class: 'of' }, t('stock.of', { n: p.stock })),
    h('div', { class: 'bar', role: 'presentation' }, h('i', { style: `width:${pct}%` })),
    countdown(p, status),
  );
}

function countdown(p, status) {
  if (status === 'UPCOMING') return h('span', { class: 'countdown', dataset: { kind: 'starts', target: p.sale_starts_at } });
  if (p.sale_ends_at && status !== 'ENDED') return h('span', { class: 'countdown', dataset: { kind: 'ends', target: p.sale_ends_at } });
  return null;
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll('.countdown')) {
    const left = Date.parse(el.dataset.target) - now;
    el.textContent = t(`count.${el.dataset.kind}`, { t: duration(left) });
    if (left <= 0 && el.dataset.kind === 'starts' && !el.dataset.fired) {
      el.dataset.fired = '1';
      document.dispatchEvent(new CustomEvent('sale-opened'));
    }
  }
}
setInterval(tick, 1000);

/** Replaces the stock blocks of a product wherever they are shown. */
function showStock(p) {
  for (const el of document.querySelectorAll(`.stock[data-product-id="${CSS.escape(p.product_id)}"]`)) {
    el.replaceWith(stockBlock(p));
  }
  tick();
}

/** Merges a stream `stock` event into a product model. */
function mergeStock(p, ev) {
  for (const k of ['available', 'reserved', 'sold', 'stock']) if (typeof ev[k] === 'number') p[k] = ev[k];
  if (ev.sale_status) {
    p.status = ev.sale_status;
    p.paused = ev.sale_status === 'PAUSED';
  }
  return p;
}

// ---- catalogue -------------------------------------------------------------------------

async function catalogue(m, gen) {
  const list = h('ul', { class: 'cards', id: 'catalogue' });
  mount(view, h('h1', { 'data-i18n': 'cat.title' }, t('cat.title')), list);
  const products = new Map();
  const load = async () => {
    let cursor = null;
    const items = [];
    do {
      const r = await call('GET', `/api/products?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { auth: false });
      items.push(...r.body.items);
      cursor = r.body.next_cursor;
    } while (cursor && items.length < 200);
    return items;
  };
  const render = (items) => {
    for (const p of items) {
      const old = products.get(p.product_id);
      products.set(p.product_id, old && old.status && p.status === undefined ? { ...p, status: saleStatus(p) } : p);
    }
    if (!products.size) return mount(list, h('li', { class: 'empty' }, t('cat.empty')));
    mount(
      list,
      [...products.values()].map((p) =>
        h(
          'li',
          { class: 'card', dataset: { productId: p.product_id } },
          h('a', { href: `#/product/${encodeURIComponent(p.product_id)}` }, h('h2', {}, p.name), h('p', { class: 'price' }, money(p.price, p.currency))),
          stockBlock(p),
        ),
      ),
    );
    tick();
  };
  let items;
  try {
    items = await load();
  } catch (e) {
    return stale(gen) || mount(view, notice('error', errText(e)));
  }
  if (stale(gen)) return;
  render(items);
  follow({
    products: items.map((p) => p.product_id),
    withOrders: false,
    onEvent: (name, ev) => {
      if (name !== 'stock' || !products.has(ev.product_id)) return;
      showStock(mergeStock(products.get(ev.product_id), ev));
    },
    poll: async () => render(await load()),
  });
  const reopen = () => {
    for (const p of products.values()) delete p.status;
    render([]);
  };
  document.addEventListener('sale-opened', reopen);
  cleanups.push(() => document.removeEventListener('sale-opened', reopen));
}

// ---- product page: buy, pay, cancel ---------------------------------------------------

async function productPage(id, gen) {
  let p;
  try {
    p = (await call('GET', `/api/products/${encodeURIComponent(id)}`, { auth: false })).body;
  } catch (e) {
    return stale(gen) || mount(view, h('a', { href: '#/' }, t('product.back')), notice('error', e.status === 404 ? t('product.notfound') : errText(e)));
  }
  if (stale(gen)) return;
  const answer = h('div', { id: 'answer', class: 'answer', 'aria-live': 'assertive' });
  const buy = h('button', { type: 'button', id: 'buy', class: 'primary big' }, t('product.buy'));
  const wish = h('button', { type: 'button', id: 'wish', class: 'secondary', hidden: !currentSession() }, t('product.wish.add'));
  let current = null; // {order_id, status, pay_by}

  mount(
    view,
    h('a', { href: '#/', class: 'back' }, t('product.back')),
    h(
      'article',
      { class: 'product', dataset: { productId: p.product_id } },
      h('h1', {}, p.name),
      p.description ? h('p', { class: 'desc' }, p.description) : null,
      h('p', { class: 'price big' }, money(p.price, p.currency)),
      stockBlock(p),
      p.per_user_limit ? h('p', { class: 'limit' }, t('product.limit', { n: p.per_user_limit })) : null,
      h('div', { class: 'actions' }, buy, wish),
      answer,
    ),
  );
  tick();

  const showOrder = () => {
    if (!current) return;
    const s = current.status;
    const kids = [h('p', { class: 'ostatus', 'data-role': 'order-status', dataset: { status: s } }, t(`ostatus.${s}`))];
    if (s === 'RESERVED') {
      kids.unshift(h('p', { class: 'outcome ok' }, t('buy.RESERVED', { t: when(current.pay_by) })));
      if (current.pay_by) kids.push(h('p', { class: 'countdown', dataset: { kind: 'pay', target: current.pay_by } }));
      kids.push(
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'button', id: 'pay', class: 'primary', onclick: () => act('payment') }, t('order.pay')),
          h('button', { type: 'button', id: 'cancel', class: 'secondary', onclick: () => act('cancel') }, t('order.cancel')),
        ),
      );
    } else if (s === 'PENDING' && current.queue_position) {
      kids.unshift(h('p', { class: 'outcome wait' }, t('buy.PENDING', { n: current.queue_position })));
    }
    if (current.message) kids.push(notice('error', current.message));
    answer.dataset.outcome = s === 'PENDING' ? 'QUEUED' : s;
    answer.dataset.orderId = current.order_id;
    mount(answer, kids);
    tick();
  };

  const refused = (code) => {
    current = null;
    answer.dataset.outcome = code;
    delete answer.dataset.orderId;
    mount(answer, h('p', { class: 'outcome refused', 'data-role': 'refusal' }, has(`buy.${code}`) ? t(`buy.${code}`) : t('buy.error', { code })));
  };

  const waitDecision = async (orderId) => {
    // the stream brings it when it is live; otherwise long-poll the order (≤ 10 s a time)
    while (current && current.order_id === orderId && current.status === 'PENDING') {
      if (feed && feed.mode === 'live') {
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      try {
        const o = (await call('GET', `/api/orders/${encodeURIComponent(orderId)}?wait=10`)).body;
        if (current && current.order_id === orderId && o.status !== 'PENDING') {
          if (o.status === 'REJECTED') return refused(o.reason || 'REJECTED');
          Object.assign(current, { status: o.status, pay_by: o.pay_by });
          showOrder();
        }
      } catch {
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  };

  buy.addEventListener('click', async () => {
    if (!requireLogin()) return;
    buy.disabled = true;
    answer.dataset.outcome = 'SENDING';
    mount(answer, h('p', { class: 'outcome wait' }, t('buy.sending')));
    try {
      const r = await call('POST', '/api/orders', {
        body: { product_id: p.product_id, quantity: 1 },
        headers: { 'Idempotency-Key': newKey() },
        ok: [202, 400, 403, 404, 409, 422, 429],
      });
      if (r.status === 201) {
        current = { order_id: r.body.order_id, status: 'RESERVED', pay_by: r.body.pay_by };
        showOrder();
      } else if (r.status === 202) {
        current = { order_id: r.body.order_id, status: 'PENDING', queue_position: r.body.queue_position };
        showOrder();
        waitDecision(r.body.order_id);
      } else {
        refused(r.body && r.body.error ? r.body.error.code : `HTTP_${r.status}`);
      }
    } catch (e) {
      refused(e.code || 'NETWORK');
    } finally {
      buy.disabled = false;
    }
  });

  const act = async (what) => {
    const o = current;
    if (!o) return;
    for (const b of answer.querySelectorAll('button')) b.disabled = true;
    try {
      const r = await call('POST', `/api/orders/${encodeURIComponent(o.order_id)}/${what}`, {
        body: what === 'payment' ? { method: 'CARD' } : undefined,
        ok: [202, 409],
      });
      if (r.status === 409) {
        const code = r.body.error.code;
        o.status = r.body.error.status || o.status;
        o.message = has(`order.${code}`) ? t(`order.${code}`) : t('err.generic', { code });
      } else {
        o.status = r.body.status;
        o.message = null;
      }
    } catch (e) {
      o.message = errText(e);
    }
    if (current === o) showOrder();
  };

  // wishlist toggle
  let wished = false;
  const showWish = () => {
    wish.textContent = t(wished ? 'product.wish.remove' : 'product.wish.add');
    wish.dataset.wished = wished ? '1' : '0';
  };
  if (currentSession()) {
    call('GET', '/api/wishlist?limit=100')
      .then((r) => {
        wished = r.body.items.some((i) => i.product_id === p.product_id);
        showWish();
      })
      .catch(() => {});
  }
  wish.addEventListener('click', async () => {
    try {
      if (wished) await call('DELETE', `/api/wishlist/${encodeURIComponent(p.product_id)}`, { ok: [404] });
      else await call('POST', '/api/wishlist', { body: { product_id: p.product_id } });
      wished = !wished;
      showWish();
    } catch (e) {
      answer.append(notice('error', errText(e)));
    }
  });

  // a refusal for want of stock no longer holds once units are back (a restock, a release)
  const stockChanged = (ev) => {
    showStock(mergeStock(p, ev));
    if (!current && ['SOLD_OUT', 'INSUFFICIENT_STOCK'].includes(answer.dataset.outcome) && p.available > 0) {
      delete answer.dataset.outcome;
      mount(answer);
    }
  };

  follow({
    products: [p.product_id],
    withOrders: !!currentSession(),
    onEvent: (name, ev) => {
      if (name === 'stock' && ev.product_id === p.product_id) stockChanged(ev);
      if (name === 'order' && current && ev.order_id === current.order_id) {
        if (ev.status === 'REJECTED') return refused(ev.reason || 'REJECTED');
        current.status = ev.status;
        showOrder();
      }
    },
    poll: async () => {
      const s = (await call('GET', `/api/products/${encodeURIComponent(p.product_id)}/stock`, { auth: false })).body;
      stockChanged({ ...s, sale_status: s.status });
      if (current && current.status !== 'PENDING') {
        const o = (await call('GET', `/api/orders/${encodeURIComponent(current.order_id)}`)).body;
        if (current && o.order_id === current.order_id && o.status !== current.status) {
          current.status = o.status;
          showOrder();
        }
      }
    },
  });
}

// ---- my orders ---------------------------------------------------------------------------

async function ordersPage(m, gen) {
  if (!requireLogin()) return;
  const list = h('ul', { class: 'orders', id: 'orders' });
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, t('order.more'));
  mount(view, h('h1', {}, t('nav.orders')), list, more);
  const rows = new Map(); // order id -> {order, el}
  let cursor = null;

  const row = (o) => {
    const status = h('span', { class: 'ostatus', 'data-role': 'order-status', dataset: { status: o.status } }, t(`ostatus.${o.status}`));
    const detail = h('div', { class: 'detail', hidden: true });
    const el = h(
      'li',
      { class: 'order', dataset: { orderId: o.order_id, status: o.status } },
      h(
        'div',
        { class: 'line' },
        h('code', { class: 'oid', title: o.order_id }, o.order_id.slice(-8)),
        status,
        o.amount ? h('span', { class: 'amount' }, money(o.amount)) : null,
        h('time', {}, when(o.created_at || o.updated_at || Date.now())),
      ),
      h(
        'div',
        { class: 'actions' },
        o.status === 'RESERVED' ? h('button', { type: 'button', class: 'primary', 'data-act': 'payment', onclick: () => act(o, 'payment') }, t('order.pay')) : null,
        ['RESERVED', 'PAID'].includes(o.status) ? h('button', { type: 'button', class: 'secondary', 'data-act': 'cancel', onclick: () => act(o, 'cancel') }, t('order.cancel')) : null,
        h('button', { type: 'button', class: 'link', 'data-act': 'history', onclick: () => toggle(o, detail) }, t('order.history')),
      ),
      detail,
    );
    return el;
  };

  const put = (o, atTop) => {
    const known = rows.get(o.order_id);
    const el = row(o);
    if (known) {
      const open = !known.el.querySelector('.detail').hidden;
      known.el.replaceWith(el);
      if (open) toggle(o, el.querySelector('.detail'));
    } else if (atTop) list.prepend(el);
    else list.append(el);
    rows.set(o.order_id, { order: o, el });
    const empty = list.querySelector('.empty');
    if (empty) empty.remove();
  };

  const toggle = async (o, detail) => {
    if (!detail.hidden) {
      detail.hidden = true;
      return;
    }
    detail.hidden = false;
    try {
      const full = (await call('GET', `/api/orders/${encodeURIComponent(o.order_id)}`)).body;
      mount(
        detail,
        h('ul', { class: 'items' }, full.items.map((i) => h('li', {}, h('a', { href: `#/product/${encodeURIComponent(i.product_id)}` }, i.product_id.slice(-8)), ` × ${i.quantity} · ${money(i.unit_price)}`))),
        h('ol', { class: 'history' }, full.history.map((x) => h('li', {}, h('span', { class: 'ostatus', dataset: { status: x.status } }, t(`ostatus.${x.status}`)), ' ', h('time', {}, when(x.at)), x.reason ? ` (${x.reason})` : ''))),
      );
    } catch (e) {
      mount(detail, notice('error', errText(e)));
    }
  };

  const act = async (o, what) => {
    const el = rows.get(o.order_id).el;
    for (const b of el.querySelectorAll('button[data-act="payment"],button[data-act="cancel"]')) b.disabled = true;
    let msg = null;
    try {
      const r = await call('POST', `/api/orders/${encodeURIComponent(o.order_id)}/${what}`, { body: what === 'payment' ? { method: 'CARD' } : undefined, ok: [202, 409] });
      if (r.status === 409) {
        msg = has(`order.${r.body.error.code}`) ? t(`order.${r.body.error.code}`) : t('err.generic', { code: r.body.error.code });
        if (r.body.error.status) o.status = r.body.error.status;
      } else o.status = r.body.status;
    } catch (e) {
      msg = errText(e);
    }
    put({ ...o });
    if (msg) rows.get(o.order_id).el.append(notice('error', msg));
  };

  const page = async (first) => {
    const r = await call('GET', `/api/orders?limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    for (const o of r.body.items) {
      const known = rows.get(o.order_id);
      if (!known || (first && known.order.status !== o.status)) put(known ? { ...known.order, ...o } : o);
    }
    cursor = r.body.next_cursor;
    more.hidden = !cursor;
    if (!rows.size) mount(list, h('li', { class: 'empty' }, t('order.none')));
  };
  more.addEventListener('click', () => page(false).catch(() => {}));
  try {
    await page(true);
  } catch (e) {
    return stale(gen) || mount(view, notice('error', errText(e)));
  }
  if (stale(gen)) return;
  follow({
    products: [],
    withOrders: true,
    onEvent: async (name, ev) => {
      if (name !== 'order') return;
      const known = rows.get(ev.order_id);
      if (known) {
        if (known.order.status !== ev.status) put({ ...known.order, status: ev.status, updated_at: ev.at });
        return;
      }
      try {
        const o = (await call('GET', `/api/orders/${encodeURIComponent(ev.order_id)}`)).body;
        put({ ...o, created_at: (o.history[0] || {}).at }, true);
      } catch {
        /* not ours or gone */
      }
    },
    poll: async () => {
      // the newest page again: new orders and changed statuses
      const r = await call('GET', '/api/orders?limit=20');
      for (const o of [...r.body.items].reverse()) {
        const known = rows.get(o.order_id);
        if (!known) put(o, true);
        else if (known.order.status !== o.status) put({ ...known.order, ...o });
      }
    },
  });
}

// ---- wishlist ------------------------------------------------------------------------------

async function wishlistPage(m, gen) {
  if (!requireLogin()) return;
  const list = h('ul', { class: 'wishlist', id: 'wishlist' });
  mount(view, h('h1', {}, t('wish.title')), list);
  const load = async () => {
    const r = await call('GET', '/api/wishlist?limit=100');
    if (!r.body.items.length) return mount(list, h('li', { class: 'empty' }, t('wish.empty')));
    mount(
      list,
      r.body.items.map((i) =>
        h(
          'li',
          { class: 'wish', dataset: { productId: i.product_id } },
          h('a', { href: `#/product/${encodeURIComponent(i.product_id)}` }, i.name || i.product_id),
          typeof i.available === 'number' ? h('span', { class: 'avail' }, t('wish.available', { n: i.available })) : null,
          h('button', { type: 'button', class: 'link', onclick: async () => { await call('DELETE', `/api/wishlist/${encodeURIComponent(i.product_id)}`, { ok: [404] }); load(); } }, t('wish.remove')),
        ),
      ),
    );
  };
  try {
    await load();
  } catch (e) {
    mount(list, notice('error', errText(e)));
  }
}

// ---- accounts ------------------------------------------------------------------------------

function field(name, type, label, attrs = {}) {
  return h('label', {}, h('span', {}, t(label)), h('input', { name, type, required: !attrs.optional, ...attrs, optional: undefined }));
}

function formView(title, fields, submit, onSubmit, extra = []) {
  const msg = h('div', { class: 'msg' });
  const form = h('form', { class: 'form', novalidate: false }, fields, h('button', { type: 'submit', class: 'primary' }, t(submit)), msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const b = form.querySelector('button[type=submit]');
    b.disabled = true;
    try {
      await onSubmit(formData(form), msg);
    } catch (err) {
      mount(msg, notice('error', errText(err), { 'data-code': err.code }));
    } finally {
      b.disabled = false;
    }
  });
  mount(view, h('h1', {}, t(title)), form, extra);
  return form;
}

function signupPage() {
  formView(
    'auth.signup.title',
    [
      field('email', 'email', 'auth.email', { autocomplete: 'email' }),
      field('password', 'password', 'auth.password', { autocomplete: 'new-password', minlength: 10 }),
      h('p', { class: 'hint' }, t('auth.signup.hint')),
      field('name', 'text', 'auth.name', { autocomplete: 'name' }),
      field('phone', 'tel', 'auth.phone', { autocomplete: 'tel', optional: true }),
    ],
    'auth.signup.submit',
    async (d) => {
      const body = { email: d.email, password: d.password, name: d.name };
      if (d.phone) body.phone = d.phone;
      await call('POST', '/api/members', { body, auth: false });
      sessionStorage.setItem('flashsale.verify', d.email);
      location.hash = '#/verify';
    },
  );
}

function verifyPage() {
  const email = sessionStorage.getItem('flashsale.verify') || '';
  const resend = h('button', { type: 'button', class: 'link', id: 'resend' }, t('auth.verify.resend'));
  const form = formView(
    'auth.verify.title',
    [
      email ? h('p', { class: 'hint' }, t('auth.verify.hint', { email })) : null,
      field('email', 'email', 'auth.email', { value: email, autocomplete: 'email' }),
      field('code', 'text', 'auth.code', { inputmode: 'numeric', pattern: '[0-9]{6}', maxlength: 6, autocomplete: 'one-time-code' }),
    ],
    'auth.verify.submit',
    async (d, msg) => {
      await call('POST', '/api/members/verify', { body: { email: d.email, code: d.code.trim() }, auth: false });
      sessionStorage.removeItem('flashsale.verify');
      sessionStorage.setItem('flashsale.login', d.email);
      mount(msg, notice('ok', t('auth.verify.done'), { id: 'verified' }));
      setTimeout(() => (location.hash = '#/login'), 800);
    },
    [resend],
  );
  resend.addEventListener('click', async () => {
    const d = formData(form);
    await call('POST', '/api/members/verify/resend', { body: { email: d.email }, auth: false }).catch(() => {});
    form.querySelector('.msg').replaceChildren(notice('ok', t('auth.verify.resent')));
  });
}

function loginPage() {
  formView(
    'auth.login.title',
    [
      field('email', 'email', 'auth.email', { value: sessionStorage.getItem('flashsale.login') || '', autocomplete: 'email' }),
      field('password', 'password', 'auth.password', { autocomplete: 'current-password' }),
    ],
    'auth.login.submit',
    async (d) => {
      await login(d.email, d.password, 'web');
      const next = sessionStorage.getItem('flashsale.next');
      sessionStorage.removeItem('flashsale.next');
      location.hash = next && next !== '#/login' ? next : '#/';
    },
    [
      h('p', {}, t('auth.login.noaccount'), ' ', h('a', { href: '#/signup' }, t('nav.signup'))),
      h('p', {}, t('auth.login.unverified'), ' ', h('a', { href: '#/verify' }, t('auth.verify.title'))),
    ],
  );
}

async function profilePage(m, gen) {
  if (!requireLogin()) return;
  let me;
  try {
    me = (await call('GET', '/api/members/me')).body;
  } catch (e) {
    return stale(gen) || mount(view, notice('error', errText(e)));
  }
  if (stale(gen)) return;
  const all = h('button', { type: 'button', class: 'secondary', id: 'logout-all' }, t('profile.logoutAll'));
  formView(
    'profile.title',
    [
      h('dl', { class: 'facts' }, h('dt', {}, t('auth.email')), h('dd', { id: 'me-email' }, me.email), h('dt', {}, t('profile.status')), h('dd', {}, me.status), h('dt', {}, t('profile.since')), h('dd', {}, when(me.created_at))),
      field('name', 'text', 'auth.name', { value: me.name || '' }),
      field('phone', 'tel', 'auth.phone', { value: me.phone || '', optional: true }),
    ],
    'profile.save',
    async (d, msg) => {
      await call('PATCH', '/api/members/me', { body: { name: d.name, phone: d.phone } });
      mount(msg, notice('ok', t('profile.saved')));
    },
    [all],
  );
  all.addEventListener('click', async () => {
    await call('POST', '/api/auth/logout-all', { ok: [401] }).catch(() => {});
    await logout();
    location.hash = '#/';
  });
}

// ---- routing -------------------------------------------------------------------------------

const routes = [
  [/^#?\/?$/, catalogue],
  [/^#\/product\/(.+)$/, (m, gen) => productPage(decodeURIComponent(m[1]), gen)],
  [/^#\/orders$/, ordersPage],
  [/^#\/wishlist$/, wishlistPage],
  [/^#\/profile$/, profilePage],
  [/^#\/login$/, loginPage],
  [/^#\/signup$/, signupPage],
  [/^#\/verify$/, verifyPage],
];

function showNav() {
  const s = currentSession();
  for (const el of document.querySelectorAll('[data-auth]')) el.hidden = (el.dataset.auth === 'in') !== !!s;
  document.body.dataset.session = s ? 'in' : 'out';
}

async function route() {
  const gen = ++routeGen;
  if (feed) feed.stop();
  feed = null;
  setLive('off');
  for (const c of cleanups) c();
  cleanups = [];
  showNav();
  const hash = location.hash || '#/';
  for (const [re, fn] of routes) {
    const m = hash.match(re);
    if (m) {
      document.body.dataset.view = fn.name || 'product';
      await fn(m, gen);
      if (!stale(gen)) document.body.dataset.ready = hash;
      return;
    }
  }
  location.hash = '#/';
}

document.getElementById('logout').addEventListener('click', async () => {
  await logout();
  location.hash = '#/';
});
document.getElementById('lang').addEventListener('click', () => {
  setLanguage(language() === 'ko' ? 'en' : 'ko');
  route();
});
onSessionChange(showNav);
window.addEventListener('hashchange', route);
apply();
route();
