import { mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { withReusedReads } from '../../src/ipc/reused.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A Unix-socket server accepting paused, as a daemon does, and a client connected to it. */
async function pair(): Promise<{ accepted: Socket; client: Socket }> {
  const dir = mkdtempSync(join(tmpdir(), 'mn-reused-'));
  const path = join(dir, 's.sock');
  let server!: Server;
  const accepted = new Promise<Socket>((resolve) => {
    server = createServer({ pauseOnConnect: true }, resolve);
  });
  await new Promise<void>((r) => server.listen(path, r));
  const client = connect(path);
  const s = await accepted;
  cleanups.push(() => {
    client.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { accepted: s, client };
}

describe('an accepted connection moved to reused-buffer reads', () => {
  it('reads what the peer sends through the reused buffer and writes back on the same connection', async () => {
    const { accepted, client } = await pair();
    const fd = (accepted as unknown as { _handle: { fd: number } })._handle.fd;
    const target = readlinkSync(`/proc/self/fd/${fd}`); // socket:[inode]
    const { sock, reads } = withReusedReads(accepted);
    cleanups.push(() => sock.destroy());
    expect(reads).toBeDefined();
    expect(sock).not.toBe(accepted);
    expect(accepted.destroyed).toBe(true);
    const newFd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
    expect(newFd).not.toBe(fd);
    expect(readlinkSync(`/proc/self/fd/${newFd}`)).toBe(target); // the same connection
    // closed on exec: a child process spawned later must not hold the connection open
    const flags = /^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${newFd}`, 'utf8'))![1]!;
    expect(Number.parseInt(flags, 8) & 0o2000000).toBe(0o2000000);
    const got: Buffer[] = [];
    let total = 0;
    const all = new Promise<void>((done) =>
      reads!.attach((chunk) => {
        got.push(Buffer.from(chunk)); // the chunk is borrowed: copy what must outlive the read
        total += chunk.length;
        if (total === 200_000) done();
      }),
    );
    // no 'data' event: the stream gives nothing when reads go to the buffer
    sock.on('data', () => {
      throw new Error('data event on an onread socket');
    });
    const sent = Buffer.alloc(200_000);
    for (let i = 0; i < sent.length; i++) sent[i] = i % 251;
    client.write(sent);
    await all;
    expect(Buffer.compare(Buffer.concat(got), sent)).toBe(0);
    const back = new Promise<Buffer>((r) => client.once('data', r));
    sock.write('pong');
    expect((await back).toString()).toBe('pong');
  });

  it('a socket without a descriptor is returned as it is, reading through its stream', () => {
    const s = new Socket();
    const { sock, reads } = withReusedReads(s);
    expect(sock).toBe(s);
    expect(reads).toBeUndefined();
    s.destroy();
  });
});
