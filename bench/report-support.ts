/** Small shared pieces of bench/nats.ts and bench/firewall.ts: percentiles, the header line, a table. */
import { cpus, loadavg } from 'node:os';

/** The q-th percentile (nearest rank) of a list of numbers. */
export function pct(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((q / 100) * s.length))]!;
}

export function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Milliseconds with two decimals, or µs below 1 ms. */
export function ms(x: number): string {
  return x < 1 ? `${(x * 1000).toFixed(0)} µs` : `${x.toFixed(2)} ms`;
}

/** `node v20…, 2 CPUs, load average 1.2 0.9 0.8 (1/5/15 min)`: the conditions the figures were taken in. */
export function conditions(): string {
  const l = loadavg().map((x) => x.toFixed(2));
  return `node ${process.version}, ${cpus().length} CPUs, load average ${l.join(' ')} (1/5/15 min)`;
}

/** A markdown table, columns padded; columns whose head starts with a space are right-aligned. */
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [head, ...rows];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.trim().length)));
  const right = head.map((h) => h.startsWith(' '));
  const cell = (c: string, i: number): string =>
    right[i] ? c.trim().padStart(w[i]!) : c.trim().padEnd(w[i]!);
  const line = (r: readonly string[]): string => `| ${r.map(cell).join(' | ')} |`;
  const rule = `|${w.map((x, i) => `${'-'.repeat(x + 1)}${right[i] ? ':' : '-'}`).join('|')}|`;
  return [line(head), rule, ...rows.map(line)].join('\n');
}
