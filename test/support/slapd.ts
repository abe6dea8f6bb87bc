import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'ldapts';
import { until } from './wait.js';

/**
 * A real OpenLDAP slapd for tests: a fresh cn=config directory (back_mdb; schemas core, cosine,
 * nis, inetorgperson; equality indexes on macAddress and ipHostNumber) in a temp dir, data loaded
 * with slapadd, slapd in the foreground on 127.0.0.1 at a port from the OS.
 * Callers check `have(['slapd', 'slapadd'])` first.
 */
export interface Slapd {
  /** `ldap://127.0.0.1:PORT/`; the same across restart(). */
  readonly url: string;
  readonly baseDN: string;
  readonly adminDN: string;
  readonly password: string;
  /** Kill slapd and wait for it to exit (the directory is kept: restart() brings it back). */
  stop(): Promise<void>;
  /** Start slapd again on the same port with the same data; resolves once it answers. */
  restart(): Promise<void>;
  /** stop() and remove the temp directory. */
  close(): Promise<void>;
}

export const BASE_DN = 'dc=example,dc=org';
const ADMIN_DN = `cn=admin,${BASE_DN}`;
const PASSWORD = 'metanet-test';

/** LDIF of a host entry under ou=hosts (RFC 2307: device + ieee802Device + ipHost). */
export function hostEntry(cn: string, mac: string, ip: string): string {
  return [
    `dn: cn=${cn},ou=hosts,${BASE_DN}`,
    'objectClass: device',
    'objectClass: ieee802Device',
    'objectClass: ipHost',
    `cn: ${cn}`,
    `macAddress: ${mac}`,
    `ipHostNumber: ${ip}`,
  ].join('\n');
}

function configLdif(dir: string): string {
  const schemas = ['core', 'cosine', 'nis', 'inetorgperson']
    .map((s) => `include: file:///etc/ldap/schema/${s}.ldif`)
    .join('\n\n');
  return `dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: ${dir}/slapd.pid

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

${schemas}

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: ${dir}/data
olcDbMaxSize: 16777216
olcSuffix: ${BASE_DN}
olcRootDN: ${ADMIN_DN}
olcRootPW: ${PASSWORD}
olcDbIndex: objectClass eq
olcDbIndex: macAddress eq
olcDbIndex: ipHostNumber eq
olcAccess: {0}to * by * read
`;
}

function baseLdif(): string {
  return `dn: ${BASE_DN}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=hosts,${BASE_DN}
objectClass: organizationalUnit
ou: hosts
`;
}

async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Whether slapd answers an anonymous root DSE search. */
async function answers(url: string): Promise<boolean> {
  const c = new Client({ url, timeout: 500, connectTimeout: 500 });
  try {
    await c.search('', { scope: 'base', filter: '(objectClass=*)' });
    return true;
  } finally {
    await c.unbind().catch(() => {});
  }
}

export async function startSlapd(opts: { entries?: readonly string[] } = {}): Promise<Slapd> {
  const dir = mkdtempSync(join(tmpdir(), 'metanet-slapd-'));
  const conf = join(dir, 'slapd.d');
  mkdirSync(conf);
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'config.ldif'), configLdif(dir));
  writeFileSync(join(dir, 'data.ldif'), [baseLdif(), ...(opts.entries ?? [])].join('\n\n') + '\n');
  try {
    execFileSync('slapadd', ['-n0', '-F', conf, '-l', join(dir, 'config.ldif')], { stdio: 'pipe' });
    execFileSync('slapadd', ['-n1', '-q', '-F', conf, '-l', join(dir, 'data.ldif')], { stdio: 'pipe' });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`slapadd failed: ${err.stderr?.toString().trim() || err.message}`);
  }
  const port = await freePort();
  const url = `ldap://127.0.0.1:${port}/`;
  let child: ChildProcess | undefined;
  let log = '';
  const killOnExit = (): void => {
    child?.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const start = async (): Promise<void> => {
    log = '';
    const c = spawn('slapd', ['-d', '0', '-F', conf, '-h', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout?.on('data', (d) => (log += d));
    c.stderr?.on('data', (d) => (log += d));
    child = c;
    await until(
      async () => {
        if (c.exitCode !== null) throw new Error(`slapd exited (${c.exitCode}): ${log.trim()}`);
        return answers(url);
      },
      `slapd on ${url}`,
      5000,
      20,
    );
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };

  await start().catch(async (e: unknown) => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  });
  return {
    url,
    baseDN: BASE_DN,
    adminDN: ADMIN_DN,
    password: PASSWORD,
    stop,
    async restart() {
      await stop();
      await start();
    },
    async close() {
      await stop();
      process.off('exit', killOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
