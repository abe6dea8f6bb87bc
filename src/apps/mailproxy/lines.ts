/** Longest line (without CRLF) the sniffers parse; a longer one stops parsing on that connection. */
export const MAX_LINE = 8192;

const LITERAL = /\{(\d{1,9})\+?\}$/;

/**
 * Incremental, bounded line splitter for one direction of a text protocol. Lines may arrive split
 * across reads or many in one read; `push` returns the complete lines (CR/LF stripped, latin1 so
 * every byte survives). With `literals` (IMAP), a line ending in `{n}` or `{n+}` goes on after n
 * raw bytes: the literal and the rest of the line come back as one logical line (CRLF kept inside).
 * A (logical) line over `max` bytes sets `overflow`; the reader returns nothing from then on.
 */
export class LineReader {
  overflow = false;
  private buf = '';
  private raw = 0;

  constructor(
    private readonly literals = false,
    private readonly max = MAX_LINE,
  ) {}

  push(chunk: Buffer): string[] {
    if (this.overflow) return [];
    const out: string[] = [];
    let s = chunk.toString('latin1');
    while (s.length > 0) {
      if (this.raw > 0) {
        const n = Math.min(this.raw, s.length);
        this.buf += s.slice(0, n);
        this.raw -= n;
        s = s.slice(n);
      } else {
        const nl = s.indexOf('\n');
        if (nl < 0) {
          this.buf += s;
          s = '';
        } else {
          this.buf += s.slice(0, nl);
          s = s.slice(nl + 1);
          const line = this.buf.endsWith('\r') ? this.buf.slice(0, -1) : this.buf;
          const lit = this.literals ? LITERAL.exec(line) : null;
          if (lit) {
            this.buf = `${line}\r\n`;
            this.raw = Number(lit[1]);
          } else {
            this.buf = '';
            if (line.length > this.max) return this.overflowed(out);
            out.push(line);
          }
        }
      }
      if (this.buf.length > this.max || this.raw > this.max) return this.overflowed(out);
    }
    return out;
  }

  /** Stop for good; the complete lines before the long one still count. */
  private overflowed(out: string[]): string[] {
    this.overflow = true;
    this.buf = '';
    return out;
  }
}
