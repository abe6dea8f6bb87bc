import { MetanetError } from '../../core/errors.js';

/**
 * The portal's template language: small enough to read in one sitting, safe by default.
 *
 *   {{name}} {{a.b}}          a value, HTML-escaped (text and attributes alike); `.` is the
 *                             current item inside #each
 *   {{t key}}                 the message `key` of the page's language, its `{param}`s filled
 *                             from the values in scope; escaped
 *   {{#if name}}…{{else}}…{{/if}}   shown when the value is truthy (a non-empty string or list)
 *   {{#each name}}…{{/each}}  once per item of a list; names resolve in the item first
 *   {{! comment}}
 *
 * There is no way to write raw HTML: only `Html` values made by the code (a rendered template)
 * are inserted as they are. No eval, no expressions, no helpers; a template is parsed once (when
 * the theme is loaded) and any mistake is an ECONFIG error naming the file and line.
 */

/** HTML the code made (a rendered template): inserted without escaping. Templates cannot make one. */
export class Html {
  constructor(readonly html: string) {}
  toString(): string {
    return this.html;
  }
}

export type Value = string | number | boolean | undefined | Html | Scope | readonly Value[];
export interface Scope {
  readonly [name: string]: Value;
}

type Node =
  | { readonly k: 'text'; readonly text: string }
  | { readonly k: 'var'; readonly name: string; readonly line: number }
  | { readonly k: 't'; readonly key: string; readonly line: number }
  | {
      readonly k: 'if' | 'each';
      readonly name: string;
      readonly line: number;
      readonly yes: Node[];
      readonly no: Node[];
    };

/** A parsed template: `render` it with values and a message lookup. */
export interface Template {
  readonly file: string;
  readonly nodes: readonly Node[];
}

export const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] ?? '&#39;');

const NAME = /^(\.|[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*)$/;
const KEY = /^[A-Za-z_][\w.-]*$/;

/** Parse a template; `file` names it in errors (`theme/splash.html:12: unclosed {{#if refused}}`). */
export function parseTemplate(source: string, file: string): Template {
  const root: Node[] = [];
  const stack: { node: Extract<Node, { k: 'if' | 'each' }>; inElse: boolean; into: Node[] }[] = [];
  let out = root;
  const tag = /\{\{(.*?)\}\}/gs;
  let last = 0;
  let line = 1;
  const fail = (why: string): never => {
    throw new MetanetError('ECONFIG', `${file}:${line}: ${why}`);
  };
  for (let m = tag.exec(source); m; m = tag.exec(source)) {
    const text = source.slice(last, m.index);
    if (text.includes('{{') || text.includes('}}')) fail('a stray "{{" or "}}"');
    if (text) out.push({ k: 'text', text });
    line += newlines(text);
    const body = m[1]!.trim();
    last = tag.lastIndex;
    const [head = '', ...rest] = body.split(/\s+/);
    if (body.startsWith('!')) {
      // a comment
    } else if (head === '#if' || head === '#each') {
      if (rest.length !== 1 || !NAME.test(rest[0]!)) fail(`{{${body}}}: expected {{${head} name}}`);
      const node: Extract<Node, { k: 'if' | 'each' }> = {
        k: head.slice(1) as 'if' | 'each',
        name: rest[0]!,
        line,
        yes: [],
        no: [],
      };
      out.push(node);
      stack.push({ node, inElse: false, into: out });
      out = node.yes;
    } else if (head === 'else') {
      const top = stack.at(-1);
      if (top?.node.k !== 'if' || top.inElse || rest.length) return fail('{{else}} outside {{#if}}');
      top.inElse = true;
      out = top.node.no;
    } else if (head === '/if' || head === '/each') {
      const top = stack.pop();
      if (!top) fail(`{{${head}}} without its {{#${head.slice(1)} …}}`);
      if (top!.node.k !== head.slice(1))
        fail(`{{${head}}} closes {{#${top!.node.k} ${top!.node.name}}} (line ${top!.node.line})`);
      out = top!.into;
    } else if (head === 't') {
      if (rest.length !== 1 || !KEY.test(rest[0]!)) fail(`{{${body}}}: expected {{t message.key}}`);
      out.push({ k: 't', key: rest[0]!, line });
    } else if (rest.length === 0 && NAME.test(head)) out.push({ k: 'var', name: head, line });
    else fail(`{{${body}}}: not a name, {{t key}}, {{#if}}, {{#each}}, {{else}} or a closing tag`);
    line += newlines(m[0]);
  }
  const tail = source.slice(last);
  if (tail.includes('{{') || tail.includes('}}')) fail('a stray "{{" or "}}"');
  if (tail) out.push({ k: 'text', text: tail });
  const open = stack.pop();
  if (open) {
    line = open.node.line;
    fail(`unclosed {{#${open.node.k} ${open.node.name}}}`);
  }
  return { file, nodes: root };
}

const newlines = (s: string): number => {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n;
};

/** What a template refers to: value names (with the #each list they are inside, if any) and message keys. */
export interface Refs {
  readonly names: readonly { readonly name: string; readonly list?: string; readonly line: number }[];
  readonly keys: readonly { readonly key: string; readonly list?: string; readonly line: number }[];
}

export function refsOf(t: Template): Refs {
  const names: { name: string; list?: string; line: number }[] = [];
  const keys: { key: string; list?: string; line: number }[] = [];
  const walk = (nodes: readonly Node[], list: string | undefined): void => {
    for (const n of nodes) {
      if (n.k === 'var') names.push({ name: n.name, line: n.line, ...(list ? { list } : {}) });
      else if (n.k === 't') keys.push({ key: n.key, line: n.line, ...(list ? { list } : {}) });
      else if (n.k === 'if' || n.k === 'each') {
        names.push({ name: n.name, line: n.line, ...(list ? { list } : {}) });
        walk(n.yes, n.k === 'each' ? n.name : list);
        walk(n.no, list);
      }
    }
  };
  walk(t.nodes, undefined);
  return { names, keys };
}

/** Look a name up in the scopes, innermost first (`.` is the innermost value itself). */
function lookup(scopes: readonly Value[], name: string): Value {
  if (name === '.') return scopes.at(-1);
  const [first, ...path] = name.split('.');
  for (let i = scopes.length - 1; i >= 0; i--) {
    const s = scopes[i];
    if (!isScope(s) || !Object.hasOwn(s, first!)) continue;
    let v: Value = s[first!];
    for (const p of path) v = isScope(v) && Object.hasOwn(v, p) ? v[p] : undefined;
    return v;
  }
  return undefined;
}

const isScope = (v: Value): v is Scope =>
  typeof v === 'object' && v !== null && !(v instanceof Html) && !Array.isArray(v);

const truthy = (v: Value): boolean => (Array.isArray(v) ? v.length > 0 : Boolean(v));

/** A value as HTML: an `Html` as it is, text and numbers escaped, anything else empty. */
function show(v: Value): string {
  if (v instanceof Html) return v.html;
  if (typeof v === 'string') return esc(v);
  if (typeof v === 'number') return String(v);
  return '';
}

/** Fill a message's `{param}`s from the scopes (escaped); an unknown one stays as it is. */
export function fill(message: string, value: (name: string) => Value): string {
  return message
    .split(/(\{[A-Za-z_][\w-]*\})/)
    .map((part, i) => {
      if (i % 2 === 0) return esc(part);
      const v = value(part.slice(1, -1));
      return v === undefined ? esc(part) : show(v);
    })
    .join('');
}

/** Render with `values`; `message(key)` gives the text of a `{{t key}}` (its params are filled here). */
export function render(t: Template, values: Scope, message: (key: string) => string): Html {
  let out = '';
  const walk = (nodes: readonly Node[], scopes: Value[]): void => {
    for (const n of nodes) {
      if (n.k === 'text') out += n.text;
      else if (n.k === 'var') out += show(lookup(scopes, n.name));
      else if (n.k === 't') out += fill(message(n.key), (p) => lookup(scopes, p));
      else if (n.k === 'if') walk(truthy(lookup(scopes, n.name)) ? n.yes : n.no, scopes);
      else {
        const list = lookup(scopes, n.name);
        if (Array.isArray(list)) for (const item of list as Value[]) walk(n.yes, [...scopes, item]);
      }
    }
  };
  walk(t.nodes, [values]);
  return new Html(out);
}
