// The realtime websocket (spec core-api B.13) with the `ws` package, as cozy-realtime
// speaks it, against a `hearth serve` started by ./run: HEARTH_URL is the instance,
// HEARTH_TOKEN a CLI token of it with io.cozy.todos, HEARTH_OTHER_TOKEN one of another.
import './localhost.mjs';
import test from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

const uri = process.env.HEARTH_URL;
const token = process.env.HEARTH_TOKEN;
// glibc does not resolve *.localhost; ws takes a lookup of its own.
const lookup = (host, options, callback) => {
  if (typeof options === 'function') callback = options;
  if (options && options.all) return callback(null, [{ address: '127.0.0.1', family: 4 }]);
  return callback(null, '127.0.0.1', 4);
};

/** Opens /realtime/ and collects the frames it receives. */
async function open() {
  const ws = new WebSocket(`${uri.replace(/^http/, 'ws')}/realtime/`, 'io.cozy.websocket', { lookup });
  const frames = [];
  const waiters = [];
  ws.on('message', (raw) => {
    frames.push(JSON.parse(raw.toString()));
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise((resolve) => ws.on('close', resolve));
  await new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  });
  assert.equal(ws.protocol, 'io.cozy.websocket');
  /** Waits (5 s at most) for a frame matching `pred`. */
  const waitFor = async (pred) => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = frames.find(pred);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no such frame in ${JSON.stringify(frames)}`);
      await new Promise((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  const send = (v) => ws.send(JSON.stringify(v));
  /** No acknowledgement exists: an unknown method's error proves the previous commands were applied. */
  const barrier = async () => {
    const n = frames.length;
    send({ method: 'SYNC' });
    await waitFor((f, i) => i >= n && f.event === 'error');
  };
  return { ws, frames, send, waitFor, barrier, closed };
}

async function createTodo(body) {
  const res = await fetch(`${uri}/data/io.cozy.todos/`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 201);
  return res.json();
}

test('AUTH, SUBSCRIBE, then a CREATED event for a document created with fetch', async () => {
  const rt = await open();
  rt.send({ method: 'AUTH', payload: token });
  rt.send({ method: 'SUBSCRIBE', payload: { type: 'io.cozy.todos' } });
  await rt.barrier();
  const created = await createTodo({ title: 'realtime', done: false });
  const ev = await rt.waitFor((f) => f.event === 'CREATED' && f.payload.id === created.id);
  assert.equal(ev.payload.type, 'io.cozy.todos');
  assert.equal(ev.payload.doc._id, created.id);
  assert.equal(ev.payload.doc._rev, created.rev);
  assert.equal(ev.payload.doc.title, 'realtime');
  rt.ws.close();
  await rt.closed;
});

test('a token of another instance is refused and the session ends', async () => {
  const rt = await open();
  rt.send({ method: 'AUTH', payload: process.env.HEARTH_OTHER_TOKEN });
  const err = await rt.waitFor((f) => f.event === 'error');
  assert.equal(err.payload.status, '401 Unauthorized');
  assert.equal(err.payload.code, 'unauthorized');
  await rt.closed;
});
