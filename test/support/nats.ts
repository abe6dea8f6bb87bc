import { type ChildProcess, spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { until } from './wait.js';

/** A real nats-server on loopback, in the foreground, on a free port. */
export interface NatsServer {
  readonly port: number;
  readonly url: string;
  /** Stop it (SIGTERM) and wait until the process is gone. */
  stop(): Promise<void>;
  /** Start it again on the same port; resolves once it accepts connections. */
  restart(): Promise<void>;
}

/** A port the OS just gave out (listen on 0, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export async function startNats(port?: number): Promise<NatsServer> {
  const p = port ?? (await freePort());
  let child: ChildProcess | undefined;
  let stderr = '';
  const start = async (): Promise<void> => {
    const c = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(p)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = c;
    c.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    await until(
      async () => {
        if (c.exitCode !== null) throw new Error(`nats-server exited (${c.exitCode}): ${stderr}`);
        return accepts(p);
      },
      `nats-server on 127.0.0.1:${p}`,
      5000,
      10,
    );
  };
  const stop = (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
    });
  };
  await start();
  return {
    port: p,
    url: `nats://127.0.0.1:${p}`,
    stop,
    restart: async () => {
      await stop();
      await start();
    },
  };
}
