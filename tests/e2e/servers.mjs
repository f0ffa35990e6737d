// Starts real `hearth serve` processes for a browser test (each with its own data
// directory and free ports) and drives their admin API through the `hearth` CLI.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, openSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const hearthBin = process.env.E2E_HEARTH;

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitForPort(port, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => {
        c.end();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A `hearth serve` process; `env(port)` answers configuration variables to add (it
 * gets the public port, for settings that name the server's own address).
 */
export async function startServer(name, env = () => ({})) {
  const data = mkdtempSync(path.join(os.tmpdir(), `hearth-e2e-${name}-`));
  const port = await freePort();
  const adminPort = await freePort();
  const passphrase = `e2e-${name}-${Math.random().toString(36).slice(2)}`;
  const log = openSync(path.join(data, 'server.log'), 'a');
  const fullEnv = { ...process.env, HEARTH_ADMIN_PASSPHRASE: passphrase, ...env(port) };
  const child = spawn(
    hearthBin,
    ['serve', '--data-dir', data, '--host', '127.0.0.1', '--port', String(port),
      '--admin-host', '127.0.0.1', '--admin-port', String(adminPort)],
    { env: fullEnv, stdio: ['ignore', log, log] },
  );
  await waitForPort(adminPort);
  const server = {
    name,
    data,
    port,
    adminPort,
    passphrase,
    child,
    /** Runs `hearth <args>` against this server's admin API; answers stdout. */
    cli(args, opts = {}) {
      const [group, ...rest] = args;
      return execFileSync(
        hearthBin,
        [group, '--admin-host', '127.0.0.1', '--admin-port', String(adminPort), ...rest],
        { env: { ...fullEnv, ...(opts.env || {}) }, encoding: 'utf8', input: opts.input },
      );
    },
    logTail() {
      try {
        return execFileSync('tail', ['-n', '60', path.join(data, 'server.log')], { encoding: 'utf8' });
      } catch {
        return '';
      }
    },
    async stop({ keep = false } = {}) {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      }
      if (!keep) rmSync(data, { recursive: true, force: true });
    },
    kill() {
      child.kill('SIGKILL');
    },
  };
  return server;
}
