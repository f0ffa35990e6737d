// The data API through the real cozy-stack-client (spec core-api A, B.6, B.7), against
// a `hearth serve` started by ./run: HEARTH_URL is the instance, HEARTH_TOKEN a CLI
// token of it, HEARTH_OTHER_TOKEN a token of another instance.
import './localhost.mjs';
import test from 'node:test';
import assert from 'node:assert/strict';
import CozyStackClientModule from 'cozy-stack-client';

const CozyStackClient = CozyStackClientModule.default || CozyStackClientModule;
const uri = process.env.HEARTH_URL;
const client = new CozyStackClient({ uri, token: process.env.HEARTH_TOKEN });

test('create, get, update and destroy a document', async () => {
  const notes = client.collection('io.cozy.todos');
  const { data: created } = await notes.create({ title: 'hello', n: 1 });
  assert.equal(created.title, 'hello');
  assert.match(created._rev, /^1-[0-9a-f]{32}$/);
  const { data: fetched } = await notes.get(created._id);
  assert.equal(fetched.title, 'hello');
  const { data: updated } = await notes.update({ ...fetched, title: 'hello again' });
  assert.match(updated._rev, /^2-/);
  await assert.rejects(notes.update({ ...fetched, title: 'stale' }), /conflict/i);
  await notes.destroy(updated);
  // The client turns the not_found error of a deleted document into `null`.
  const { data: gone } = await notes.get(created._id);
  assert.equal(gone, null);
});

test('all() and find() with sort, limit and skip', async () => {
  const tasks = client.collection('io.cozy.tasks');
  for (let n = 0; n < 12; n++) {
    await tasks.create({ label: `task ${n}`, priority: n % 4, done: n % 2 === 0 });
  }
  const all = await tasks.all({ limit: 5 });
  assert.equal(all.data.length, 5);
  assert.equal(all.next, true);
  const found = await tasks.find({ done: false, priority: { $gt: 0 } }, { sort: [{ priority: 'asc' }], limit: 3 });
  assert.equal(found.data.length, 3);
  const priorities = found.data.map((t) => t.priority);
  assert.deepEqual(priorities, [...priorities].sort((a, b) => a - b));
  assert.ok(found.data.every((t) => t.done === false && t.priority > 0));
  const rest = await tasks.find({ done: false, priority: { $gt: 0 } }, { sort: [{ priority: 'asc' }], limit: 3, skip: 3 });
  assert.equal(rest.data.length, 3);
  // A full page may have more after it (CouchDB's `next = n >= limit`); the next is empty.
  const end = await tasks.find({ done: false, priority: { $gt: 0 } }, { sort: [{ priority: 'asc' }], limit: 3, skip: 6 });
  assert.equal(end.data.length, 0);
  assert.equal(end.next, false);
});

test('an empty doctype lists as empty, not as an error', async () => {
  const { data } = await client.collection('io.cozy.never.written').all();
  assert.deepEqual(data, []);
});

test("another instance's token is refused", async () => {
  const other = new CozyStackClient({ uri, token: process.env.HEARTH_OTHER_TOKEN });
  await assert.rejects(other.collection('io.cozy.todos').all(), /Invalid JWT token|Invalid token/);
});
