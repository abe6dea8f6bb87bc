// A raw line client for the lab: `node talk.mjs HOST PORT RE0 [CMD RE]...` — waits for a line
// matching RE0 (the greeting), then for each pair sends CMD + CRLF and waits for a line matching RE.
// Prints the whole transcript; exits 1 after 4 s without a match.
import { connect } from 'node:net';

const [host, port, first, ...rest] = process.argv.slice(2);
const s = connect(Number(port), host);
let buf = '';
let seen = '';
let want = new RegExp(first, 'm');
const steps = [];
for (let i = 0; i < rest.length; i += 2) steps.push([rest[i], new RegExp(rest[i + 1], 'm')]);
const timer = setTimeout(() => {
  process.stdout.write(seen + buf);
  process.stderr.write(`no line matching ${want}\n`);
  process.exit(1);
}, 4000);
s.on('data', (d) => {
  buf += d.toString('latin1');
  for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
    const line = buf.slice(0, i + 1);
    buf = buf.slice(i + 1);
    seen += line;
    if (want.test(line)) {
      const next = steps.shift();
      if (!next) {
        clearTimeout(timer);
        process.stdout.write(seen);
        process.exit(0);
      }
      want = next[1];
      s.write(`${next[0]}\r\n`);
    }
  }
});
s.on('close', () => {
  process.stdout.write(seen + buf);
  process.stderr.write(`closed before a line matching ${want}\n`);
  process.exit(3);
});
s.on('error', (e) => {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
});
