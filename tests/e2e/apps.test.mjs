//! A web app in a real browser (issue 7): the demo app (tests/fixtures/apps/demo),
//! installed from a local directory registry when ./run creates the instance
//! (`--apps demo`), served on its own origin `demo.<instance>`; the owner logs in,
//! opens it, and the page shows what the API answered to the app's token. Started by
//! ./run, which gives the instance and its password.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const domain = process.env.E2E_APPS_DOMAIN;
const password = process.env.E2E_APPS_PASSWORD;
const base = `http://${domain}`;
const [host, port] = domain.split(':');
const appOrigin = `http://demo.${host}:${port}`;
const shots = process.env.E2E_SCREENSHOTS;

let browser;
let context;
let page;

async function shot(name) {
  if (shots) {
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  }
}

function launch() {
  return chromium.launch({
    executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** The claims of a JWT, unverified. */
function claims(jwt) {
  const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  return JSON.parse(Buffer.from(payload, 'base64').toString('utf8'));
}

before(async () => {
  browser = await launch();
  context = await browser.newContext();
  page = await context.newPage();
});

after(async () => {
  await browser?.close();
});

test('without a session, the app sends to the login page', async () => {
  const anonymous = await browser.newContext();
  const p = await anonymous.newPage();
  const response = await p.goto(`${appOrigin}/`);
  const url = new URL(p.url());
  assert.equal(url.host, domain, `landed on ${p.url()} (${response && response.status()})`);
  assert.equal(url.pathname, '/auth/login');
  const redirect = url.searchParams.get('redirect') || '';
  assert.ok(redirect.startsWith(`${appOrigin}/`), `redirect=${redirect}`);
  await anonymous.close();
});

test('the owner logs in', async () => {
  await page.goto(`${base}/auth/login`);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
  assert.equal(await page.textContent('#domain'), domain);
});

test('the demo app, on its own origin, calls the API with its token', async () => {
  const calls = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/settings/instance') {
      calls.push({ url: r.url(), headers: r.headers() });
    }
  });
  await page.goto(`${appOrigin}/`);
  // Served on the app's origin (after whatever hop the server makes to set a session).
  await page.waitForURL((u) => u.origin === appOrigin);
  assert.equal(await page.title(), 'Demo');
  const status = page.locator('#status:not([data-state="loading"])');
  await status.waitFor({ timeout: 15000 });
  const state = await page.getAttribute('#status', 'data-state');
  const shown = await page.textContent('#result');
  await shot('apps-1-demo');
  assert.equal(state, 'ok', `the page says: ${await page.textContent('#status')} ${shown}`);

  // The template gave the page the instance's domain and an app token for demo.
  assert.equal(await page.textContent('#domain'), domain);
  const token = await page.getAttribute('[role=application]', 'data-cozy-token');
  const c = claims(token);
  assert.deepEqual([].concat(c.aud), ['app']);
  assert.equal(c.sub, 'demo');
  assert.equal(c.iss, domain);
  const cozy = JSON.parse(await page.getAttribute('[role=application]', 'data-cozy'));
  assert.equal(cozy.token, token);
  assert.equal(cozy.domain, domain);

  // The call went from the app's origin to the instance, with that token.
  assert.equal(calls.length, 1, JSON.stringify(calls));
  assert.equal(new URL(calls[0].url).host, domain);
  assert.equal(calls[0].headers.authorization, `Bearer ${token}`);

  // And the page shows the answers: the instance's settings, the todo it wrote with
  // its manifest's permissions, and the refusal of a doctype it has none on.
  const answer = JSON.parse(shown);
  assert.equal(answer.data.id, 'io.cozy.settings.instance');
  assert.equal(answer.data.attributes.locale, 'en');
  assert.deepEqual(await page.locator('#todos li').allTextContents(), ['Try Hearth']);
  assert.equal(await page.textContent('#forbidden'), '403');
});

test('an app file that does not exist is a 404', async () => {
  const response = await page.goto(`${appOrigin}/nope.js`);
  assert.equal(response.status(), 404);
});
