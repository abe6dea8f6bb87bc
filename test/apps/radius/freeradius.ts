import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

/**
 * A FreeRADIUS 3.2 of the test's own: /etc/freeradius/3.0 copied into a temp dir, then edited —
 * our radiusd.conf (paths in the dir, no user switch, no reject delay, log to stdout), one client
 * with `require_message_authenticator = yes`, a virtual server on loopback (PAP, CHAP, the users
 * file; accounting to a detail file), only the modules it uses, and the BlastRADIUS mitigation for
 * 3.2.1: a Message-Authenticator in every Access-Accept and Access-Reject (3.2.1 sends none by
 * itself). Start it with `freeradius -f -l stdout -d DIR` and wait for "Ready to process requests".
 */
export interface RaddbOptions {
  readonly secret: string;
  /** The NAS's source address. */
  readonly client: string;
  readonly authPort: number;
  readonly acctPort: number;
  /** The users file (mods-config/files/authorize). */
  readonly users: string;
}

export function writeRaddb(dir: string, o: RaddbOptions): { dir: string; detail: string } {
  rmSync(dir, { recursive: true, force: true });
  cpSync('/etc/freeradius/3.0', dir, { recursive: true, dereference: false, verbatimSymlinks: true });
  for (const sub of ['mods-enabled', 'sites-enabled'])
    for (const f of readdirSync(join(dir, sub))) rmSync(join(dir, sub, f), { force: true });
  for (const m of ['always', 'attr_filter', 'chap', 'pap', 'files', 'preprocess', 'expr'])
    symlinkSync(`../mods-available/${m}`, join(dir, 'mods-enabled', m));
  mkdirSync(join(dir, 'log'), { recursive: true });
  mkdirSync(join(dir, 'run'), { recursive: true });
  const detail = join(dir, 'log', 'detail');
  writeFileSync(
    join(dir, 'radiusd.conf'),
    `prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = ${dir}/log
raddbdir = ${dir}
radacctdir = ${dir}/log
name = freeradius
confdir = \${raddbdir}
modconfdir = \${confdir}/mods-config
certdir = \${confdir}/certs
cadir = \${confdir}/certs
run_dir = ${dir}/run
db_dir = \${raddbdir}
libdir = /usr/lib/freeradius
pidfile = \${run_dir}/\${name}.pid
max_request_time = 30
cleanup_delay = 5
max_requests = 16384
hostname_lookups = no
log {
	destination = stdout
	colourise = no
	auth = yes
	auth_badpass = no
	auth_goodpass = no
}
security {
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = yes
}
proxy_requests = no
$INCLUDE clients.conf
thread pool {
	start_servers = 2
	max_servers = 8
	min_spare_servers = 1
	max_spare_servers = 4
	max_requests_per_server = 0
	auto_limit_acct = no
}
modules {
	$INCLUDE mods-enabled/
	detail mn_detail {
		filename = ${detail}
		escape_filenames = no
		permissions = 0600
		header = "%t"
		locking = no
	}
}
instantiate {
}
policy {
	$INCLUDE policy.d/
}
$INCLUDE sites-enabled/
`,
  );
  writeFileSync(
    join(dir, 'clients.conf'),
    `client nas {
	ipaddr = ${o.client}
	secret = ${o.secret}
	require_message_authenticator = yes
	nas_type = other
}
`,
  );
  writeFileSync(
    join(dir, 'sites-enabled', 'metanet'),
    `server metanet {
listen {
	type = auth
	ipaddr = 127.0.0.1
	port = ${o.authPort}
}
listen {
	type = acct
	ipaddr = 127.0.0.1
	port = ${o.acctPort}
}
authorize {
	preprocess
	chap
	files
	pap
}
authenticate {
	Auth-Type PAP {
		pap
	}
	Auth-Type CHAP {
		chap
	}
}
preacct {
	preprocess
}
accounting {
	mn_detail
	ok
}
post-auth {
	update reply {
		Message-Authenticator := 0x00
	}
	Post-Auth-Type REJECT {
		attr_filter.access_reject
		update reply {
			Message-Authenticator := 0x00
		}
	}
}
}
`,
  );
  // CoovaChilli's volume Gigawords, which FreeRADIUS 3.2's ChilliSpot dictionary lacks.
  const dict = join(dir, 'dictionary');
  writeFileSync(
    dict,
    `${existsSync(dict) ? readFileSync(dict, 'utf8') : ''}
BEGIN-VENDOR	ChilliSpot
ATTRIBUTE	ChilliSpot-Max-Input-Gigawords		21	integer
ATTRIBUTE	ChilliSpot-Max-Output-Gigawords		22	integer
ATTRIBUTE	ChilliSpot-Max-Total-Gigawords		23	integer
END-VENDOR	ChilliSpot
`,
  );
  writeFileSync(join(dir, 'mods-config', 'files', 'authorize'), o.users);
  return { dir, detail };
}

/** FreeRADIUS's detail file → one record per request: attribute → value (quotes removed), `_time` the header. */
export function parseDetail(file: string): Record<string, string>[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split(/\n\s*\n/)
    .map((block) => block.split('\n').filter((l) => l.trim() !== ''))
    .filter((lines) => lines.length > 1)
    .map((lines) => {
      const r: Record<string, string> = { _time: lines[0]!.trim() };
      for (const l of lines.slice(1)) {
        const m = /^\s*([A-Za-z0-9-]+)\s*=\s*(.*)$/.exec(l);
        if (m) r[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1');
      }
      return r;
    });
}
