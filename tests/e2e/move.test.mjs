//! Moving a person's Hearth to another server (issue 9), in a real browser, between
//! two `hearth serve` processes (two "servers" on two ports) that mail through a real
//! SMTP receiver. The person starts from the source's settings page, picks the target
//! in the wizard (served by the source server on `move.localhost:<port>`), types the
//! target's password, confirms by the mail, waits, and lands on the target with every
//! file, version, document, app and shared link there; the source then refuses OAuth
//! clients with 410 and shows old shared links' visitors the new address. A second
//! move starts from the wizard's own link.
import '../clients/localhost.mjs';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startServer } from './servers.mjs';
import { startSmtp } from './smtp.mjs';

const shots = process.env.E2E_SCREENSHOTS;
const iterations = process.env.E2E_KDF_ITERATIONS || '100000';

let smtp;
let source;
let target;
let browser;

async function shot(page, name) {
  if (shots) {
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: `${shots}/move-${name}.png`, fullPage: true });
  }
}

before(async () => {
  smtp = await startSmtp();
  const mail = {
    HEARTH_MAIL_HOST: '127.0.0.1',
    HEARTH_MAIL_PORT: String(smtp.port),
    HEARTH_MAIL_DISABLE_TLS: 'true',
  };
  source = await startServer('source', (port) => ({ ...mail, HEARTH_MOVE_DOMAIN: `move.localhost:${port}` }));
  target = await startServer('target', () => mail);
  browser = await chromium.launch({
    executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  const failed = process.exitCode && process.exitCode !== 0;
  for (const s of [source, target]) {
    if (s && failed) console.error(`--- ${s.name} log ---\n${s.logTail()}`);
    await s?.stop();
  }
  await smtp?.close();
});

/** Creates an instance with a password and an email; answers its base URL. */
function addInstance(server, name, password, extra = []) {
  const domain = `${name}.localhost:${server.port}`;
  server.cli(['instances', 'add', '--kdf-iterations', iterations, '--locale', 'en',
    '--passphrase', password, '--email', `${name}@example.net`, ...extra, domain]);
  return { domain, base: `http://${domain}`, password };
}

function cliToken(server, domain, scopes) {
  return server.cli(['instances', 'token-cli', domain, ...scopes]).trim();
}

async function api(base, token, method, path, body, headers = {}) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, Accept: 'application/vnd.api+json', ...headers },
    body,
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

/** Files, a version, contacts, a shared link and an OAuth client on the source. */
async function fillSource(inst) {
  const token = cliToken(source, inst.domain,
    ['io.cozy.files', 'io.cozy.contacts', 'io.cozy.permissions', 'io.cozy.oauth.clients']);
  const upload = (dir, name, content) => api(inst.base, token, 'POST',
    `/files/${dir}?Type=file&Name=${encodeURIComponent(name)}`, content, { 'Content-Type': 'text/plain' });
  const folder = await api(inst.base, token, 'POST', '/files/io.cozy.files.root-dir?Type=directory&Name=Notes');
  assert.equal(folder.status, 201, folder.text);
  const files = {};
  for (let i = 0; i < 12; i++) {
    const name = `note-${i}.txt`;
    const r = await upload(folder.json.data.id, name, `note ${i} of ${inst.domain}\n`);
    assert.equal(r.status, 201, r.text);
    files[name] = r.json.data.id;
  }
  const shared = await upload('io.cozy.files.root-dir', 'shared.txt', 'first words\n');
  assert.equal(shared.status, 201, shared.text);
  // A second version of the shared file: the first one is kept as an old version.
  const v2 = await api(inst.base, token, 'PUT', `/files/${shared.json.data.id}`, 'the shared words\n',
    { 'Content-Type': 'text/plain' });
  assert.equal(v2.status, 200, v2.text);
  for (const n of ['Ada', 'Grace']) {
    const r = await api(inst.base, token, 'POST', '/data/io.cozy.contacts/',
      JSON.stringify({ fullname: n }), { 'Content-Type': 'application/json' });
    assert.equal(r.status, 201, r.text);
  }
  const perm = await api(inst.base, token, 'POST', '/permissions?codes=visitor', JSON.stringify({
    data: { type: 'io.cozy.permissions', attributes: { permissions: {
      files: { type: 'io.cozy.files', verbs: ['GET'], values: [shared.json.data.id] },
    } } },
  }), { 'Content-Type': 'application/vnd.api+json' });
  assert.equal(perm.status, 200, perm.text);
  const code = perm.json.data.attributes.codes.visitor;
  // An OAuth client with a token, which the move must turn away with 410.
  const reg = await fetch(`${inst.base}/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ redirect_uris: ['http://app.example/cb'], client_name: 'Phone',
      software_id: 'e2e.phone' }),
  });
  assert.equal(reg.status, 201);
  const client = await reg.json();
  const oauthToken = source.cli(['instances', 'token-oauth', inst.domain, client.client_id, 'io.cozy.files']).trim();
  assert.equal((await api(inst.base, oauthToken, 'GET', '/files/io.cozy.files.root-dir')).status, 200);
  return { files, sharedId: shared.json.data.id, code, oauthToken };
}

async function login(page, inst) {
  await page.goto(`${inst.base}/auth/login`);
  await page.fill('#password', inst.password);
  await Promise.all([page.waitForURL(`${inst.base}/`), page.click('button[type=submit]')]);
}

/** The wizard's target step, the target's password page, then the summary. */
async function chooseTarget(page, to) {
  await page.locator('#target-url').waitFor();
  await page.fill('#target-url', to.base);
  await Promise.all([page.waitForURL((u) => u.host === to.domain), page.locator('#target-url').press('Enter')]);
  assert.equal(new URL(page.url()).pathname, '/auth/authorize/move');
  await page.fill('#password', to.password);
  await Promise.all([page.waitForURL((u) => u.host.startsWith('move.localhost')), page.click('button[type=submit]')]);
  await page.locator('#move-submit').waitFor();
}

/** Confirms in the wizard, opens the mail's link, waits for the target's login. */
async function confirmAndWait(page, from, to) {
  const before = smtp.messages.length;
  await Promise.all([page.waitForURL((u) => u.host === from.domain), page.click('#move-submit')]);
  assert.equal(new URL(page.url()).pathname, '/move/request');
  const mail = await smtp.waitFor(/move\/go\?secret=/, before);
  const link = mail.match(/http:\/\/[^\s"<>]+\/move\/go\?secret=[0-9a-zA-Z]+/)[0];
  assert.ok(link.startsWith(from.base), link);
  await page.goto(link);
  assert.equal(new URL(page.url()).host, to.domain);
  await page.waitForURL(`${to.base}/auth/login`, { timeout: 120000 });
  return link;
}

async function checkTarget(to, from, seeded, { app = false } = {}) {
  const token = cliToken(target, to.domain, ['io.cozy.files', 'io.cozy.contacts', 'io.cozy.apps']);
  const listed = await api(to.base, token, 'GET', `/files/${seeded.sharedId}`);
  assert.equal(listed.status, 200, listed.text);
  assert.equal(listed.json.data.attributes.name, 'shared.txt');
  const versions = listed.json.data.relationships?.old_versions?.data || [];
  assert.equal(versions.length, 1, 'the old version moved too');
  const content = await fetch(`${to.base}/files/download/${seeded.sharedId}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(await content.text(), 'the shared words\n');
  for (const [name, id] of Object.entries(seeded.files)) {
    const r = await fetch(`${to.base}/files/download/${id}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(await r.text(), `note ${name.match(/\d+/)[0]} of ${from.domain}\n`);
  }
  const contacts = await api(to.base, token, 'GET', '/data/io.cozy.contacts/_all_docs?include_docs=true');
  const docs = contacts.json.rows.map((r) => r.doc).filter((d) => d && d.fullname);
  assert.deepEqual(docs.filter((d) => !d.me).map((d) => d.fullname).sort(), ['Ada', 'Grace']);
  // The owner's own contact came along, with the target's address.
  const me = docs.find((d) => d.me);
  assert.ok(me, 'the "myself" contact moved');
  assert.equal(me.email[0].address, `${to.domain.split('.')[0]}@example.net`);
  if (app) {
    const apps = await api(to.base, token, 'GET', '/apps/');
    assert.ok(apps.json.data.some((a) => a.attributes.slug === 'demo'), 'the demo app is installed');
  }
}

test('a move started from the settings page', { timeout: 300000 }, async () => {
  const from = addInstance(source, 'alice', 'source password 1', ['--apps', 'demo']);
  const to = addInstance(target, 'alicenew', 'target password 1');
  const seeded = await fillSource(from);
  const context = await browser.newContext();
  const page = await context.newPage();
  await login(page, from);
  await page.goto(`${from.base}/settings`);
  await shot(page, '1-settings');
  await Promise.all([page.waitForURL((u) => u.host.startsWith('move.localhost')), page.click('#move-start')]);
  await chooseTarget(page, to);
  await shot(page, '2-summary');
  await confirmAndWait(page, from, to);
  await shot(page, '3-target-login');
  // The person logs in on the target with the target's password.
  await page.fill('#password', to.password);
  await Promise.all([page.waitForURL(`${to.base}/`), page.click('button[type=submit]')]);
  await checkTarget(to, from, seeded, { app: true });

  // The old shared link shows the new one, which opens the file on the target.
  const oldLink = `http://demo.${from.domain}/public?sharecode=${seeded.code}`;
  const visitor = await (await browser.newContext()).newPage();
  const res = await visitor.goto(oldLink);
  assert.equal(res.status(), 410);
  const newLink = `http://demo.${to.domain}/public?sharecode=${seeded.code}`;
  assert.ok((await visitor.content()).includes(newLink.replace(/&/g, '&amp;')), 'the move page shows the new link');
  await visitor.goto(newLink);
  await visitor.locator('#shared-status:not([data-state=loading])').waitFor({ timeout: 15000 });
  assert.equal(await visitor.getAttribute('#shared-status', 'data-state'), 'ok',
    await visitor.textContent('#shared-status'));
  assert.equal(await visitor.textContent('#shared-name'), 'shared.txt');
  assert.equal(await visitor.textContent('#shared-content'), 'the shared words\n');

  // OAuth clients of the source get 410 with the new address.
  const gone = await api(from.base, seeded.oauthToken, 'GET', '/files/io.cozy.files.root-dir');
  assert.equal(gone.status, 410, gone.text);
  assert.equal(gone.json.errors[0].links.related.replace(/\/$/, ''), to.base);
  await context.close();
});

test('a move started from the wizard link', { timeout: 300000 }, async () => {
  const from = addInstance(source, 'bob', 'source password 2');
  const to = addInstance(target, 'bobnew', 'target password 2');
  const seeded = await fillSource(from);
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`http://move.localhost:${source.port}/`);
  await page.fill('#source-url', from.base);
  // Not logged in on the source: its login page first, then back to the wizard.
  await Promise.all([page.waitForURL((u) => u.host === from.domain), page.locator('#source-url').press('Enter')]);
  await page.fill('#password', from.password);
  await Promise.all([page.waitForURL((u) => u.host.startsWith('move.localhost')), page.click('button[type=submit]')]);
  await chooseTarget(page, to);
  await confirmAndWait(page, from, to);
  await checkTarget(to, from, seeded);
  await context.close();
});
