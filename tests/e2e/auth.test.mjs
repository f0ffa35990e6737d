//! The owner's path in a real browser (spec instances 3, core-api B.4, B.5): open the
//! registration link, choose a password, land logged in, log out, log in again, and
//! see a wrong password refused. Started by ./run, which gives the instance's link.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const registerUrl = process.env.E2E_REGISTER_URL;
const domain = process.env.E2E_DOMAIN;
const iterations = process.env.E2E_KDF_ITERATIONS;
const base = `http://${domain}`;
const host = domain.split(':')[0];
const password = 'correct horse battery staple';
// Set E2E_SCREENSHOTS to a directory to keep a picture of each step.
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

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // This machine has no network but loopback: keep Chromium from calling home.
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
  context = await browser.newContext();
  page = await context.newPage();
});

after(async () => {
  await browser?.close();
});

test('the registration link leads to the password form', async () => {
  assert.match(registerUrl, /^http:\/\/alice\.localhost:\d+\/\?registerToken=[0-9a-f]{32}$/);
  await page.goto(registerUrl);
  assert.equal(new URL(page.url()).pathname, '/auth/passphrase');
  assert.equal(await page.title(), 'Choose your password');
  const form = page.locator('form[data-salt]');
  assert.equal(await form.getAttribute('data-salt'), `me@${host}`);
  assert.equal(await form.getAttribute('data-iterations'), iterations);
  await shot('1-choose-password');
});

test('the page hashes as the spec says, with or without WebCrypto', async () => {
  const result = await page.evaluate(async () => {
    const h = window.hearthPassphrase;
    const long = 'ü'.repeat(40); // 80 bytes: longer than an HMAC block
    return {
      secure: window.isSecureContext && !!crypto.subtle,
      known: await h.loginHash('cozy', 'me@alice.localhost', 1000),
      subtle: await h.pbkdf2(long, 'me@alice.localhost', 3),
      plain: h.pbkdf2Js(long, 'me@alice.localhost', 3),
      subtleShort: await h.pbkdf2('cozy', 'salt', 1000),
      plainShort: h.pbkdf2Js('cozy', 'salt', 1000),
    };
  });
  assert.ok(result.secure, '*.localhost is a secure context: WebCrypto is used');
  // The same value as the server's own client_hash (and Python's hashlib).
  assert.equal(result.known, 'nuAQOk1HLaeQTZb1cJ4IKjGxIpo/b6EOHVf+X5ognDk=');
  assert.equal(result.plain, result.subtle);
  assert.equal(result.plainShort, result.subtleShort);
});

test('two different passwords are caught in the page', async () => {
  await page.fill('#password', password);
  await page.fill('#password-confirm', password + '!');
  await page.click('button[type=submit]');
  await page.locator('#status.error').waitFor();
  assert.equal(await page.textContent('#status'), 'The two passwords differ.');
  assert.equal(new URL(page.url()).pathname, '/auth/passphrase');
});

test('choosing a password logs in, and only its hash leaves the browser', async () => {
  const posted = [];
  page.on('request', (r) => {
    if (r.method() === 'POST') posted.push({ url: r.url(), body: r.postData() || '' });
  });
  await page.fill('#password', password);
  await page.fill('#password-confirm', password);
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
  assert.equal(posted.length, 1);
  assert.equal(new URL(posted[0].url).pathname, '/settings/passphrase');
  const fields = new URLSearchParams(posted[0].body);
  assert.equal(fields.get('iterations'), iterations);
  assert.match(fields.get('passphrase'), /^[A-Za-z0-9+/]{43}=$/);
  assert.ok(!posted[0].body.includes('horse'), 'the clear password is not sent');
  assert.equal(await page.textContent('#domain'), domain);
  const session = (await context.cookies()).find((c) => c.name === 'cozysessid');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');
  await shot('2-home');
});

test('the registration link cannot be used twice', async () => {
  await page.goto(registerUrl);
  assert.equal(await page.textContent('#domain'), domain, 'already onboarded: home');
  await page.goto(registerUrl.replace('/?', '/auth/passphrase?'));
  assert.equal(page.url(), `${base}/`, 'the password form sends home');
});

test('logging out ends the session', async () => {
  await Promise.all([page.waitForURL(`${base}/auth/login`), page.click('text=Log out')]);
  assert.equal(await page.title(), 'Log in');
  const session = (await context.cookies()).find((c) => c.name === 'cozysessid');
  assert.equal(session, undefined, 'the cookie is cleared');
  await page.goto(`${base}/`);
  assert.equal(new URL(page.url()).pathname, '/auth/login');
  await shot('3-login');
});

test('a wrong password is refused with a message', async () => {
  await page.fill('#password', 'not my password');
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.click('button[type=submit]'),
  ]);
  assert.equal(response.status(), 401);
  await page.waitForLoadState();
  assert.equal(await page.textContent('#status'), 'Incorrect password. Try again.');
  await shot('4-wrong-password');
});

test('the right password logs in again', async () => {
  await page.fill('#password', password);
  await page.check('input[name=long-run-session]');
  await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
  assert.equal(await page.textContent('#domain'), domain);
  const session = (await context.cookies()).find((c) => c.name === 'cozysessid');
  assert.ok(session.expires > Date.now() / 1000 + 365 * 24 * 3600, 'stay logged in');
});
