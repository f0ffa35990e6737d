// The files API through the real cozy-stack-client (spec core-api A.3 "Files", B.8),
// against a `hearth serve` started by ./run: HEARTH_URL is the instance, HEARTH_TOKEN a
// CLI token of it that grants io.cozy.files.
import './localhost.mjs';
import test from 'node:test';
import assert from 'node:assert/strict';
import CozyStackClientModule from 'cozy-stack-client';

const CozyStackClient = CozyStackClientModule.default || CozyStackClientModule;
const client = new CozyStackClient({ uri: process.env.HEARTH_URL, token: process.env.HEARTH_TOKEN });
const files = client.collection('io.cozy.files');
const ROOT = 'io.cozy.files.root-dir';
const TRASH = 'io.cozy.files.trash-dir';

async function download(id) {
  const res = await files.fetchFileContentById(id);
  assert.equal(res.status, 200);
  return new Uint8Array(await res.arrayBuffer());
}

test('folders by path: created once, then found', async () => {
  const { data: dir } = await files.createDirectoryByPath('/Client tests/nested');
  assert.equal(dir.type, 'directory');
  assert.equal(dir.attributes.path, '/Client tests/nested');
  assert.equal(dir.attributes.trashed, undefined, 'directories have no trashed field');
  const { data: again } = await files.createDirectoryByPath('/Client tests/nested');
  assert.equal(again._id, dir._id);
  const { data: stat } = await files.statByPath('/Client tests/nested');
  assert.equal(stat._id, dir._id);
  const orCreate = await files.getDirectoryOrCreate('other', { _id: stat.attributes.dir_id, attributes: { path: '/Client tests' } });
  assert.equal(orCreate.data.attributes.path, '/Client tests/other');
  const same = await files.getDirectoryOrCreate('other', { _id: stat.attributes.dir_id, attributes: { path: '/Client tests' } });
  assert.equal(same.data._id, orCreate.data._id);
  await assert.rejects(files.statByPath('/Client tests/missing'), (err) => {
    assert.equal(err.status, 404);
    assert.equal(JSON.parse(err.message).errors[0].status, '404');
    return true;
  });
});

test('upload, download, rename, move, trash and restore a file', async () => {
  const { data: dir } = await files.createDirectoryByPath('/Lifecycle');
  const { data: target } = await files.createDirectoryByPath('/Lifecycle/target');
  const text = 'héllo from the JS client\n';
  const bytes = new TextEncoder().encode(text);

  const { data: file } = await files.createFile(text, { name: 'hello.txt', dirId: dir._id });
  assert.equal(file.type, 'file');
  assert.equal(file.name, 'hello.txt');
  assert.equal(file.dir_id, dir._id);
  assert.equal(file.size, String(bytes.length), 'size is a string of the byte count');
  assert.equal(file.trashed, false);
  assert.match(file.md5sum, /^[A-Za-z0-9+/]{22}==$/);
  assert.match(file._rev, /^1-/);
  assert.deepEqual(await download(file._id), bytes);

  // Binary content, as TextEncoder output, keeps every byte.
  const binary = new Uint8Array([0, 1, 2, 250, 255, 10, 13, 0]);
  const { data: bin } = await files.createFile(binary, { name: 'bytes.bin', dirId: dir._id, contentType: 'application/octet-stream' });
  assert.equal(bin.size, '8');
  assert.deepEqual(await download(bin._id), binary);

  // A name already taken in the directory is a conflict.
  await assert.rejects(files.createFile('again', { name: 'hello.txt', dirId: dir._id }), (err) => err.status === 409);

  const { data: renamed } = await files.updateAttributes(file._id, { name: 'renamed.txt' });
  assert.equal(renamed.name, 'renamed.txt');
  assert.equal(renamed._id, file._id);
  assert.notEqual(renamed._rev, file._rev);
  // A stale revision is refused.
  await assert.rejects(
    files.updateAttributes(file._id, { name: 'stale.txt' }, { ifMatch: file._rev }),
    (err) => err.status === 412
  );

  const { data: moved } = await files.updateAttributes(file._id, { dir_id: target._id }, { ifMatch: renamed._rev });
  assert.equal(moved.dir_id, target._id);
  const { data: movedStat } = await files.statByPath('/Lifecycle/target/renamed.txt');
  assert.equal(movedStat._id, file._id);
  assert.deepEqual(await download(file._id), bytes);

  const { data: trashed } = await files.destroy(moved);
  assert.equal(trashed._id, file._id);
  assert.equal(trashed.trashed, true);
  assert.equal(trashed.dir_id, TRASH);
  assert.equal(trashed.restore_path, '/Lifecycle/target');
  const { data: gone } = await files.statById(target._id);
  assert.ok(!(gone.relationships.contents.data || []).some((r) => r.id === file._id));

  const { data: restored } = await files.restore(file._id);
  assert.equal(restored._id, file._id);
  assert.equal(restored.trashed, false);
  assert.equal(restored.dir_id, target._id);
  assert.equal(restored.name, 'renamed.txt');
  assert.deepEqual(await download(file._id), bytes);

  // New content for the same file, then the file trashed and destroyed for good.
  const { data: updated } = await files.updateFile('new content', { fileId: file._id, name: 'renamed.txt' });
  assert.equal(updated._id, file._id);
  assert.equal(updated.size, '11');
  assert.deepEqual(await download(file._id), new TextEncoder().encode('new content'));
  await files.destroy(updated);
  await files.emptyTrash();
  await assert.rejects(files.statById(file._id), (err) => err.status === 404);
  const { data: doomed } = await files.createFile('short-lived', { name: 'doomed.txt', dirId: dir._id });
  await files.deleteFilePermanently(doomed._id);
  await assert.rejects(files.statById(doomed._id), (err) => err.status === 404);
});

test('find() queries files with Mango', async () => {
  const { data: dir } = await files.createDirectoryByPath('/Find');
  for (const name of ['c.txt', 'a.txt', 'b.md']) {
    await files.createFile(`content of ${name}`, { name, dirId: dir._id });
  }
  const found = await files.find({ dir_id: dir._id, type: 'file' }, { sort: [{ dir_id: 'asc' }, { type: 'asc' }, { name: 'asc' }] });
  assert.deepEqual(found.data.map((f) => f.name), ['a.txt', 'b.md', 'c.txt']);
  assert.ok(found.data.every((f) => f._type === 'io.cozy.files' && f.dir_id === dir._id));
  assert.equal(found.next, false);

  const limited = await files.find({ dir_id: dir._id, type: 'file' }, { sort: [{ dir_id: 'asc' }, { type: 'asc' }, { name: 'asc' }], limit: 2 });
  assert.deepEqual(limited.data.map((f) => f.name), ['a.txt', 'b.md']);
  assert.equal(limited.next, true);
  assert.ok(limited.bookmark, 'a full page links to the next one');
  const rest = await files.find({ dir_id: dir._id, type: 'file' }, { sort: [{ dir_id: 'asc' }, { type: 'asc' }, { name: 'asc' }], limit: 2, bookmark: limited.bookmark });
  assert.deepEqual(rest.data.map((f) => f.name), ['c.txt']);
  assert.equal(rest.next, false);

  const texts = await files.find({ dir_id: dir._id, name: { $regex: '\\.txt$' } });
  assert.deepEqual(texts.data.map((f) => f.name).sort(), ['a.txt', 'c.txt']);

  // Directories have no `trashed` field: {trashed: false} finds files only.
  const live = await files.find({ dir_id: dir._id, trashed: false });
  assert.equal(live.data.length, 3);
  assert.ok(live.data.every((f) => f.type === 'file'));
});

test('statById of the root lists its children, without the trash', async () => {
  await files.createDirectoryByPath('/Listed');
  const { data: root, included } = await files.statById(ROOT);
  assert.equal(root._id, ROOT);
  assert.equal(root.type, 'directory');
  assert.equal(root.attributes.path, '/');
  const ids = root.relationships.contents.data.map((r) => r.id);
  const names = included.map((f) => f.name);
  assert.ok(names.includes('Listed'), names.join(', '));
  assert.ok(!ids.includes(TRASH));
  assert.ok(included.every((f) => ids.includes(f._id)));
  const { data: small } = await files.statById(ROOT, { 'page[limit]': 1 });
  assert.equal(small.relationships.contents.data.length, 1);
});
