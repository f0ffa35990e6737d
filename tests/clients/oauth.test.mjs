// OAuth with the real cozy-stack-client (spec core-api B.5, A.3): the client registers,
// the person logs in and accepts in the "browser" (plain HTTP requests here, carrying
// cookies and the CSRF token as a browser would), the client exchanges the code,
// uses and refreshes its token, then unregisters, which kills its token.
// HEARTH_OAUTH_URL is an onboarded instance whose password is HEARTH_OAUTH_PASSWORD.
import './localhost.mjs';
import test from 'node:test';
import assert from 'node:assert/strict';
import { pbkdf2Sync } from 'node:crypto';
import StackClient from 'cozy-stack-client';

const { OAuthClient } = StackClient;
const uri = process.env.HEARTH_OAUTH_URL;
const password = process.env.HEARTH_OAUTH_PASSWORD;

/** What the login page's script sends: PBKDF2 twice (spec core-api B.5.1). */
function loginHash(iterations) {
  const host = new URL(uri).hostname;
  const master = pbkdf2Sync(password, `me@${host}`, iterations, 32, 'sha256');
  return pbkdf2Sync(master, password, 1, 32, 'sha256').toString('base64');
}

const cookiesOf = (res) => res.headers.getSetCookie().map((c) => c.split(';')[0]);
const attr = (html, name) => html.match(new RegExp(`${name}="([^"]*)"`))[1];
const hidden = (html, name) => html.match(new RegExp(`name="${name}" value="([^"]*)"`))[1];

test('register, authorize, exchange, use, refresh and revoke', async () => {
  const client = new OAuthClient({
    uri,
    oauth: { clientName: 'Hearth client test', redirectURI: 'http://localhost:4000/cb', softwareID: 'io.hearth.test' },
    scope: ['io.cozy.todos'],
  });
  await client.register();
  assert.ok(client.isRegistered());
  assert.match(client.oauthOptions.clientID, /^[0-9a-f]{32}$/);

  // The browser: log in, open the consent page, accept.
  const loginPage = await fetch(`${uri}/auth/login`, { headers: { accept: 'text/html' } });
  const loginHtml = await loginPage.text();
  let jar = cookiesOf(loginPage);
  const loginForm = new URLSearchParams({
    passphrase: loginHash(Number(attr(loginHtml, 'data-iterations'))),
    csrf_token: hidden(loginHtml, 'csrf_token'),
  });
  const login = await fetch(`${uri}/auth/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded', cookie: jar.join('; ') },
    body: loginForm,
  });
  assert.equal(login.status, 303);
  jar = [...jar, ...cookiesOf(login)];
  const stateCode = client.generateStateCode();
  const consent = await fetch(client.getAuthCodeURL({ stateCode }), { headers: { accept: 'text/html', cookie: jar.join('; ') } });
  assert.equal(consent.status, 200);
  const consentHtml = await consent.text();
  assert.match(consentHtml, /Hearth client test/);
  jar = [...jar.filter((c) => !c.startsWith('_csrf=')), ...cookiesOf(consent)];
  const fields = ['client_id', 'redirect_uri', 'state', 'response_type', 'scope', 'code_challenge', 'code_challenge_method', 'csrf_token'];
  const accept = await fetch(`${uri}/auth/authorize`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: jar.join('; ') },
    body: new URLSearchParams(Object.fromEntries(fields.map((f) => [f, hidden(consentHtml, f)]))),
  });
  assert.equal(accept.status, 302);
  const code = client.getAccessCodeFromURL(accept.headers.get('location'), stateCode);

  // The client again: exchange, use, refresh.
  const token = await client.fetchAccessToken(code);
  client.setToken(token);
  const { data } = await client.collection('io.cozy.todos').create({ label: 'from an OAuth client' });
  assert.equal(data.label, 'from an OAuth client');
  const refreshed = await client.refreshToken();
  assert.ok(refreshed.accessToken);
  const all = await client.collection('io.cozy.todos').all();
  assert.ok(all.data.some((t) => t.label === 'from an OAuth client'));

  // Unregistering revokes the token.
  const accessToken = client.token.accessToken;
  await client.unregister();
  const revoked = await fetch(`${uri}/data/io.cozy.todos/_all_docs`, { headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' } });
  assert.equal(revoked.status, 400);
  assert.deepEqual(await revoked.json(), { error: 'Invalid JWT token' });
});
