// Browser tests of the storefront and the operator console: Playwright (playwright-core)
// driving Debian's chromium, headless, through the edge (nginx) that the harness started
// (tests/integration/test_browser.py starts the system and runs this file).
//
//  1. a buyer signs up, reads the code from the notifier's mail spool, verifies, logs in,
//     buys (RESERVED with the payment deadline), pays, and sees PAID appear live on their
//     orders page in another tab — no reload there, and no request for orders: the stream
//     brought it;
//  2. a second buyer sees SOLD_OUT when the last unit is gone (live on the page, and as the
//     answer to "buy");
//  3. the operator restocks in the console, and the second buyer's page shows the new stock
//     without a reload or a request for it; the console's audit of the product says OK.
// Screenshots of every page go to FS_SCREENSHOTS (docs/screenshots/ in the repository).
//
// Environment: FS_BASE_URL (the edge), FS_SPOOL (the notifier's maildir), FS_ADMIN_EMAIL,
// FS_ADMIN_PASSWORD, FS_SCREENSHOTS, FS_CHROMIUM (/usr/bin/chromium).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.FS_BASE_URL;
const spool = process.env.FS_SPOOL;
const shots = process.env.FS_SCREENSHOTS;
const PASSWORD = 'correct horse 42';
const TIMEOUT = 20000;
fs.mkdirSync(shots, { recursive: true });

const log = (...a) => console.log(new Date().toISOString().slice(11, 23), ...a);

/** The newest verification code the notifier spooled for `email` (maildir new/*). */
async function codeFor(email) {
  const deadline = Date.now() + 40000;
  for (;;) {
    const dir = path.join(spool, 'new');
    const found = [];
    for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      const head = text.split(/\r?\n\r?\n/)[0].replace(/\r?\n[ \t]+/g, ' ');
      const hdr = {};
      for (const line of head.split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i > 0) hdr[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      if (hdr.to === `<${email}>` && hdr['x-flashsale-kind'] === 'VERIFY_EMAIL') found.push(hdr);
    }
    if (found.length) {
      found.sort((a, b) => Date.parse(a.date) - Date.parse(b.date));
      const code = found[found.length - 1].subject.split(' ').pop();
      assert.match(code, /^\d{6}$/);
      return code;
    }
    assert.ok(Date.now() < deadline, `no verification mail for ${email} in the spool`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

async function ready(page, hash) {
  await page.waitForSelector(`body[data-ready="${hash}"]`);
}

/** Sign-up, verification with the mailed code, log-in: the buyer ends on the catalogue. */
async function newBuyer(page, email, name, shoot) {
  await page.goto(`${base}/#/signup`);
  await ready(page, '#/signup');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', PASSWORD);
  await page.fill('input[name=name]', name);
  if (shoot) await shot(page, 'signup');
  await page.click('form button[type=submit]');
  await ready(page, '#/verify');
  const code = await codeFor(email);
  log(`${email}: code ${code} from the spool`);
  await page.fill('input[name=code]', code);
  await page.click('form button[type=submit]');
  await page.waitForSelector('#verified');
  if (shoot) await shot(page, 'verify');
  await ready(page, '#/login');
  assert.equal(await page.inputValue('input[name=email]'), email);
  await page.fill('input[name=password]', PASSWORD);
  if (shoot) await shot(page, 'login');
  await page.click('form button[type=submit]');
  await ready(page, '#/');
}

async function logIn(page, email) {
  await page.goto(`${base}/#/login`);
  await ready(page, '#/login');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('form button[type=submit]');
  await ready(page, '#/');
}

/** Marks the document; still marked later = the page was never reloaded meanwhile. */
async function mark(page) {
  await page.evaluate(() => {
    window.__notReloaded = true;
  });
}
async function notReloaded(page) {
  assert.equal(await page.evaluate(() => window.__notReloaded === true), true, 'the page was reloaded');
}

/** Requests to the API matching re from now on (to show that live data came by the stream). */
function watchRequests(page, re) {
  const seen = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (re.test(u.pathname + u.search)) seen.push(`${r.method()} ${u.pathname}${u.search}`);
  });
  return seen;
}

const browser = await chromium.launch({
  executablePath: process.env.FS_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 1 };
const pages = [];
async function open(ctxOpts, label) {
  const ctx = await browser.newContext(ctxOpts);
  const page = await ctx.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => {
    // (answers such as 404 and 409 are expected; the browser reports each as an error)
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) log(`[${label} console] ${m.text()}`);
  });
  page.on('pageerror', (e) => log(`[${label} page error] ${e.message}`));
  pages.push([label, page]);
  return page;
}

let failed = false;
try {
  const run = Date.now().toString(36);

  // ---- the operator creates the product in the console -----------------------------------
  const op = await open({ viewport: { width: 1280, height: 900 }, locale: 'en-US' }, 'console');
  await op.goto(`${base}/admin/`);
  await op.waitForSelector('#console-login');
  await op.evaluate(() => localStorage.setItem('flashsale.lang', 'en'));
  await op.reload();
  await op.waitForSelector('#console-login');
  await shot(op, 'console-login');
  await op.fill('#console-login input[name=email]', process.env.FS_ADMIN_EMAIL);
  await op.fill('#console-login input[name=password]', process.env.FS_ADMIN_PASSWORD);
  await op.click('#console-login button[type=submit]');
  await op.waitForSelector('#product-form');
  await op.fill('#product-form input[name=name]', `Air Runner ${run}`);
  await op.fill('#product-form textarea[name=description]', 'Limited run of 1. 한정 1켤레.');
  await op.fill('#product-form input[name=price]', '129000');
  await op.fill('#product-form input[name=stock]', '1');
  const startedLocal = await op.evaluate(() => {
    const d = new Date(Date.now() - 60000);
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  });
  await op.fill('#product-form input[name=sale_starts_at]', startedLocal);
  await op.fill('#product-form input[name=per_user_limit]', '1');
  await op.click('#product-form button[type=submit]');
  const created = await op.waitForSelector('#created');
  const pid = await created.getAttribute('data-product-id');
  const row = `#products tr[data-product-id="${pid}"]`;
  await op.waitForSelector(`${row} td[data-role=available]:text-is("1")`);
  await op.click(`${row} button[data-act=chart]`);
  log(`operator created product ${pid} (stock 1) in the console`);

  // ---- (1) a buyer signs up, verifies, buys, pays, sees PAID live --------------------------
  const b1 = await open({ ...phone, locale: 'en-US' }, 'buyer1');
  await b1.goto(`${base}/`);
  await b1.evaluate(() => localStorage.setItem('flashsale.lang', 'en'));
  const email1 = `buyer1.${run}@example.com`;
  await newBuyer(b1, email1, 'Lee Jiwoo', true);
  // the catalogue shows the product (the PostgreSQL read model may be a moment behind)
  for (let i = 0; !(await b1.$(`.card[data-product-id="${pid}"]`)); i++) {
    assert.ok(i < 30, 'the product never appeared in the catalogue');
    await new Promise((r) => setTimeout(r, 500));
    await b1.evaluate(() => window.dispatchEvent(new HashChangeEvent('hashchange')));
    await ready(b1, '#/');
  }
  await b1.waitForSelector('body[data-live="live"]');
  await shot(b1, 'catalogue');
  await b1.click(`.card[data-product-id="${pid}"] a`);
  await b1.waitForSelector(`.product[data-product-id="${pid}"] .stock[data-available="1"]`);
  await b1.waitForSelector('body[data-live="live"]');
  await b1.click('#buy');
  const answer = await b1.waitForSelector('#answer[data-outcome="RESERVED"]');
  const oid = await answer.getAttribute('data-order-id');
  const reservedText = await answer.textContent();
  assert.match(reservedText, /Pay by/, reservedText);
  assert.match(await b1.textContent('#answer .countdown'), /Pay within \d\d:\d\d/);
  await shot(b1, 'product-reserved');
  log(`buyer 1: RESERVED ${oid}: ${reservedText.trim().slice(0, 80)}`);

  // the same buyer's orders, in another tab (a second session of their own)
  const b1b = await open({ ...phone, locale: 'en-US' }, 'buyer1-orders');
  await b1b.goto(`${base}/`);
  await b1b.evaluate(() => localStorage.setItem('flashsale.lang', 'en'));
  await logIn(b1b, email1);
  await b1b.goto(`${base}/#/orders`);
  await b1b.waitForSelector(`li.order[data-order-id="${oid}"][data-status="RESERVED"]`);
  await b1b.waitForSelector('body[data-live="live"]');
  await mark(b1b);
  const orderReads = watchRequests(b1b, /^\/api\/orders/);

  await b1.click('#pay');
  await b1.waitForSelector('#answer[data-outcome="PAID"]');
  await b1b.waitForSelector(`li.order[data-order-id="${oid}"][data-status="PAID"]`);
  await notReloaded(b1b);
  assert.deepEqual(orderReads, [], 'PAID came by polling, not by the stream');
  await shot(b1b, 'orders');
  log('buyer 1: paid; PAID appeared live in the other tab (no reload, no order request)');
  await b1b.click(`li.order[data-order-id="${oid}"] button[data-act=history]`);
  await b1b.waitForSelector(`li.order[data-order-id="${oid}"] .history li >> nth=1`);
  await shot(b1b, 'orders-history');
  await b1b.goto(`${base}/#/profile`);
  await b1b.waitForSelector(`#me-email:text-is("${email1}")`);
  await shot(b1b, 'profile');

  // ---- (2) a second buyer sees SOLD_OUT ----------------------------------------------------
  const b2 = await open({ ...phone, locale: 'ko-KR' }, 'buyer2');
  await b2.goto(`${base}/`);
  await b2.evaluate(() => localStorage.setItem('flashsale.lang', 'ko'));
  const email2 = `buyer2.${run}@example.com`;
  await newBuyer(b2, email2, '김민지', false);
  await b2.goto(`${base}/#/product/${pid}`);
  await b2.waitForSelector(`.product .stock[data-status="SOLD_OUT"][data-available="0"]`);
  await b2.waitForSelector('body[data-live="live"]');
  await b2.click('#wish');
  await b2.waitForSelector('#wish[data-wished="1"]');
  await b2.click('#buy');
  await b2.waitForSelector('#answer[data-outcome="SOLD_OUT"]');
  await shot(b2, 'product-sold-out');
  log('buyer 2: SOLD_OUT');

  // ---- (3) the operator restocks; the buyer's page follows without a reload -------------------
  await mark(b2);
  const stockReads = watchRequests(b2, /^\/api\/products/);
  await op.fill(`${row} input[name=quantity]`, '5');
  await op.click(`${row} button[data-act=restock]`);
  await b2.waitForSelector(`.product .stock[data-status="ON_SALE"][data-available="5"]`);
  await b2.waitForSelector('#answer:not([data-outcome])', { state: 'attached' }); // the refusal is gone
  await notReloaded(b2);
  assert.deepEqual(stockReads, [], 'the new stock came by polling, not by the stream');
  await shot(b2, 'product-restocked');
  log('operator restocked 5; buyer 2 saw 5 available live');
  await op.waitForSelector(`${row} td[data-role=available]:text-is("5")`);
  await op.click(`${row} button[data-act=audit]`);
  const verdict = await op.waitForSelector(`${row} [data-role=verdict][data-verdict]:not([data-verdict="RUNNING"])`, { timeout: 120000 });
  assert.equal(await verdict.getAttribute('data-verdict'), 'OK',
               `${await verdict.textContent()}\n${await verdict.getAttribute('title')}`); // title: the audit's report
  await op.waitForSelector('#breaker[data-state]');
  await shot(op, 'console');
  log(`console: audit ${await verdict.textContent()}`);

  await b2.goto(`${base}/#/wishlist`);
  await b2.waitForSelector(`li.wish[data-product-id="${pid}"]`);
  await shot(b2, 'wishlist');
  log('storefront and console: PASS');
} catch (e) {
  failed = true;
  console.error(e);
  for (const [label, page] of pages) {
    await page.screenshot({ path: path.join(shots, `failure-${label}.png`), fullPage: true }).catch(() => {});
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
