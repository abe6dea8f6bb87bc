import type { SendResult } from '../core/listener.js';
import type { Message, Tuple } from '../core/message.js';

/** JSON form of a message: `[[tag, type, value], …]`; int64 beyond 2^53 as a decimal string, bytes as hex. */
export function messageJson(m: Message): unknown[] {
  return m.tuples.map((t: Tuple) => [t.tag, t.type, jsonValue(t)]);
}

function jsonValue(t: Tuple): unknown {
  switch (t.type) {
    case 'int':
      return typeof t.value === 'bigint' ? t.value.toString() : t.value;
    case 'bytes':
      return Buffer.from(t.value).toString('hex');
    case 'list':
      return messageJson(t.value);
    default:
      return t.value;
  }
}

export function resultText(r: SendResult): string {
  if (!r.delivered) return `${r.mailbox}: not delivered (no listener)`;
  const parts = [`${r.mailbox}: delivered to ${r.listeners} listener${r.listeners === 1 ? '' : 's'}`];
  if (r.stopped)
    parts.push(`stopped${r.stoppedBy?.identity.tuples.length ? ` by {${r.stoppedBy.identity}}` : ''}`);
  for (const e of r.errors) parts.push(`error: ${e.error}`);
  if (r.timedOut.length) parts.push(`${r.timedOut.length} timed out`);
  return parts.join(', ');
}

export function resultJson(r: SendResult): unknown {
  return {
    mailbox: r.mailbox,
    delivered: r.delivered,
    listeners: r.listeners,
    stopped: r.stopped,
    stoppedBy: r.stoppedBy ? messageJson(r.stoppedBy.identity) : null,
    errors: r.errors.map((e) => e.error),
    timedOut: r.timedOut.length,
  };
}

/** `ls` of one daemon: its mailboxes, their tuples and listeners in chain order. */
export function lsText(m: Message): string {
  const lines = [`${m.str('daemon')} (pid ${m.int('pid')})`];
  for (const t of m.all('mailbox')) {
    if (t.type !== 'list') continue;
    const b = t.value;
    const tuples = b.list('tuples').toString();
    lines.push(
      `  ${b.str('path')}${tuples ? `  {${tuples}}` : ''}${b.bool('serial', false) ? '  serial' : ''}`,
    );
    for (const lt of b.all('listener')) {
      if (lt.type !== 'list') continue;
      const l = lt.value;
      const id = l.list('identity').toString();
      const remote = l.has('remote') ? `  from ${l.str('remote')}` : '';
      lines.push(`    #${l.int('id')} ${l.str('name')}${id ? ` {${id}}` : ''}${remote}`);
    }
  }
  return lines.join('\n');
}
