// The higher-level cozy-client (60.21.2) on top of cozy-stack-client, against Hearth:
// queries with Q(), saves, and a Mango index created by the client.
import './localhost.mjs';
import test from 'node:test';
import assert from 'node:assert/strict';
import CozyClientModule from 'cozy-client';
import StackClient from 'cozy-stack-client';

const CozyClient = CozyClientModule.default || CozyClientModule;
const { Q } = CozyClientModule;
const uri = process.env.HEARTH_URL;
const token = process.env.HEARTH_TOKEN;

test('save and query documents with cozy-client', async () => {
  const client = new CozyClient({ uri, token });
  for (const label of ['alpha', 'beta', 'gamma']) {
    await client.save({ _type: 'io.cozy.todos', label, kind: 'cozy-client' });
  }
  const { data } = await client.query(Q('io.cozy.todos').where({ kind: 'cozy-client' }).sortBy([{ label: 'desc' }]).indexFields(['kind', 'label']));
  assert.deepEqual(data.map((d) => d.label), ['gamma', 'beta', 'alpha']);
  const one = await client.query(Q('io.cozy.todos').getById(data[0]._id));
  assert.equal(one.data.label, 'gamma');
});

test('an explicit index with the stack client', async () => {
  const stack = new (StackClient.default || StackClient)({ uri, token });
  const todos = stack.collection('io.cozy.todos');
  const index = await todos.createIndex(['label']);
  assert.ok(index, 'the index was created');
  const found = await todos.find({ label: { $gt: null } }, { indexedFields: ['label'], sort: [{ label: 'asc' }], limit: 2 });
  assert.equal(found.data.length, 2);
});
