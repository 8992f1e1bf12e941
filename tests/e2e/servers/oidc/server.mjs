#!/usr/bin/env node
// TEST OpenID provider for Barbican's end-to-end tests (npm `oidc-provider`, pinned in
// package.json). Loopback only; never use it for anything else.
//
//   node server.mjs --port 0 [--generations 3] [--max-objects 200000] [--quiet]
//
// prints `LISTENING <port>` once it serves the issuer `http://127.0.0.1:<port>` (exactly).
//
// OAuth 2.0 (the provider's own routes; discovery at /.well-known/openid-configuration):
//   POST /token               client_credentials; `resource` picks the resource server:
//       urn:barbican:api-es     RFC 9068 JWT access token (typ at+jwt), ES256
//       urn:barbican:api-rs     JWT, RS256
//       urn:barbican:api-ed     JWT, EdDSA (Ed25519)
//       urn:barbican:other      JWT, ES256, an audience Barbican's test config doesn't accept
//       urn:barbican:opaque     opaque token (introspect it)
//     scopes `read` and `write` on each. Header `X-Test-TTL: <s>` sets the token lifetime.
//   POST /token/introspection (RFC 7662; opaque tokens only: the provider answers 400
//     unsupported_token_type for JWT access tokens), POST /token/revocation (RFC 7009), GET /jwks.
// Clients (secret = `<client_id>-secret`; `groups` claim in every access token they get):
//   api-admin       client_secret_basic  groups [admins, users]
//   api-reader      client_secret_post   groups [users]
//   api-nogroups    client_secret_basic  no groups claim
//   barbican-introspector  client_secret_basic  (introspection only; may introspect any token)
//   barbican-introspector-post  client_secret_post  (introspection only; any token)
// Other clients may introspect and revoke only their own tokens.
// Access tokens carry `sub` = client_id (client_credentials has no end user) and
// `username` = client_id; opaque tokens' introspection answers carry the same `sub`, `username`
// and `groups`.
//
// Keys: `--generations N` generations are made at start-up, each with one RSA-2048 (RS256),
// one EC P-256 (ES256) and one Ed25519 (EdDSA) key, kids `rs256-g<i>`, `es256-g<i>`,
// `eddsa-g<i>`. Generation 0 signs at first; /jwks publishes the generations from the oldest
// not retired up to the current one.
//
// Test control (loopback, JSON answers):
//   POST /__test/rotate        the next generation signs new tokens; old keys stay published
//   POST /__test/retire        unpublish every generation older than the current one
//   GET  /__test/stats         request counts (discovery, jwks, token, introspection,
//                              revocation, other), the last introspection calls, key state,
//                              store size
//   POST /__test/reset         zero the counters
//   POST /__test/token?resource=...&scope=read+write&client=api-admin[&ttl=s]
//                              a token from the real token endpoint (client_credentials, with
//                              the client's own auth method); answers the token response
//   POST /__test/groups?client=ID&groups=a|b   change a client's groups claim
//                              (`groups=` empty list; `none=1` no claim at all)
//   POST /__test/mode?jwks=ok|error|garbage|hang&introspection=ok|error
//   POST /__test/sign          body JSON {"alg": "ES256"|"RS256"|"EdDSA"|"HS256"|"none",
//                              "signer": "current"|"foreign"|"g<i>"|"rsa-public-pem",
//                              "header": {...}, "payload": {...}}: a compact JWS signed with
//                              the chosen key (the kid defaults to the key's; `header` fields
//                              override). "foreign" keys are never published;
//                              "rsa-public-pem" is HS256 keyed with the current RSA public key's
//                              PEM (the algorithm-confusion attack).

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { promisify } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const generateKeyPair = promisify(crypto.generateKeyPair);

// ---------------------------------------------------------------------------------------
// arguments
// ---------------------------------------------------------------------------------------

function parseArgs(argv) {
  const out = { port: 0, generations: 3, maxObjects: 200000, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') out.port = Number(next());
    else if (a === '--generations') out.generations = Number(next());
    else if (a === '--max-objects') out.maxObjects = Number(next());
    else if (a === '--quiet') out.quiet = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) throw new Error('bad --port');
  if (!Number.isInteger(out.generations) || out.generations < 1 || out.generations > 32) {
    throw new Error('bad --generations (1..32)');
  }
  if (!Number.isInteger(out.maxObjects) || out.maxObjects < 1000) throw new Error('bad --max-objects (>= 1000)');
  return out;
}

const args = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------------------------------
// bounded store (the default memory adapter keeps only 1000 objects: DESIGN.md §5)
// ---------------------------------------------------------------------------------------

class BoundedStore {
  constructor(max) {
    this.max = max;
    this.map = new Map(); // insertion order = eviction order
    this.evicted = 0;
  }

  get(key) {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (e.expiry !== undefined && e.expiry <= Date.now()) {
      this.map.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key, value, maxAgeMs) {
    this.map.delete(key);
    const expiry = typeof maxAgeMs === 'number' && Number.isFinite(maxAgeMs) ? Date.now() + maxAgeMs : undefined;
    this.map.set(key, { value, expiry });
    while (this.map.size > this.max) {
      const oldest = this.map.keys().next().value;
      this.map.delete(oldest);
      this.evicted += 1;
    }
  }

  delete(key) {
    this.map.delete(key);
  }

  get size() {
    return this.map.size;
  }
}

const STORE = new BoundedStore(args.maxObjects);

class BoundedAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const ms = typeof expiresIn === 'number' ? expiresIn * 1000 : undefined;
    STORE.set(this.key(id), payload, ms);
    if (payload.grantId) {
      const gk = `grant:${payload.grantId}`;
      const members = STORE.get(gk) || [];
      members.push(this.key(id));
      STORE.set(gk, members, ms);
    }
    if (payload.uid) STORE.set(`uid:${payload.uid}`, id, ms);
    if (payload.userCode) STORE.set(`userCode:${payload.userCode}`, id, ms);
  }

  async find(id) {
    return STORE.get(this.key(id));
  }

  async findByUid(uid) {
    const id = STORE.get(`uid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = STORE.get(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const p = STORE.get(this.key(id));
    if (p) p.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    STORE.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const gk = `grant:${grantId}`;
    for (const k of STORE.get(gk) || []) STORE.delete(k);
    STORE.delete(gk);
  }
}

// ---------------------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------------------

const ALGS = ['RS256', 'ES256', 'EdDSA'];

async function makeKey(alg, kid) {
  let pair;
  if (alg === 'RS256') pair = await generateKeyPair('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
  else if (alg === 'ES256') pair = await generateKeyPair('ec', { namedCurve: 'P-256' });
  else if (alg === 'EdDSA') pair = await generateKeyPair('ed25519');
  else throw new Error(alg);
  const jwk = { ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
  const { d, p, q, dp, dq, qi, ...pub } = jwk;
  return { alg, kid, privateKey: pair.privateKey, publicKey: pair.publicKey, jwk, publicJwk: pub };
}

const kidFor = (alg, gen) => `${alg.toLowerCase()}-g${gen}`;

const GENERATIONS = await Promise.all(
  Array.from({ length: args.generations }, (_, gen) => Promise.all(ALGS.map((alg) => makeKey(alg, kidFor(alg, gen))))
    .then((keys) => Object.fromEntries(keys.map((k) => [k.alg, k])))),
);
// Keys no one publishes ("another issuer's"), made on first use.
const FOREIGN = {};
async function foreignKey(alg) {
  FOREIGN[alg] ||= makeKey(alg, `${alg.toLowerCase()}-foreign`);
  return FOREIGN[alg];
}

const KEYS = { current: 0, oldestPublished: 0 };

function publishedJwks() {
  const keys = [];
  for (let g = KEYS.oldestPublished; g <= KEYS.current; g++) {
    for (const alg of ALGS) keys.push(GENERATIONS[g][alg].publicJwk);
  }
  return { keys };
}

function keyState() {
  return {
    current: KEYS.current,
    oldest_published: KEYS.oldestPublished,
    generations: GENERATIONS.length,
    signing_kids: Object.fromEntries(ALGS.map((a) => [a, kidFor(a, KEYS.current)])),
    published_kids: publishedJwks().keys.map((k) => k.kid),
  };
}

// ---------------------------------------------------------------------------------------
// clients, resources, claims
// ---------------------------------------------------------------------------------------

const CLIENT_DEFS = [
  { id: 'api-admin', auth: 'client_secret_basic', groups: ['admins', 'users'] },
  { id: 'api-reader', auth: 'client_secret_post', groups: ['users'] },
  { id: 'api-nogroups', auth: 'client_secret_basic', groups: null },
  { id: 'barbican-introspector', auth: 'client_secret_basic', groups: null, introspectOnly: true },
  { id: 'barbican-introspector-post', auth: 'client_secret_post', groups: null, introspectOnly: true },
];
const CLIENTS = new Map(CLIENT_DEFS.map((c) => [c.id, { ...c, secret: `${c.id}-secret` }]));

const RESOURCES = {
  'urn:barbican:api-es': { format: 'jwt', alg: 'ES256' },
  'urn:barbican:api-rs': { format: 'jwt', alg: 'RS256' },
  'urn:barbican:api-ed': { format: 'jwt', alg: 'EdDSA' },
  'urn:barbican:other': { format: 'jwt', alg: 'ES256' },
  'urn:barbican:opaque': { format: 'opaque' },
};
const RESOURCE_SCOPE = 'read write';

function resourceServerInfo(resource) {
  const r = RESOURCES[resource];
  if (!r) throw new errors.InvalidTarget(`unknown resource ${resource}`);
  const info = { scope: RESOURCE_SCOPE, audience: resource, accessTokenFormat: r.format };
  if (r.format === 'jwt') info.jwt = { sign: { alg: r.alg, kid: kidFor(r.alg, KEYS.current) } };
  return info;
}

function testTtl(ctx) {
  const raw = ctx?.get?.('x-test-ttl');
  if (raw && /^[0-9]{1,6}$/.test(raw) && Number(raw) >= 1) return Number(raw);
  return undefined;
}

// ---------------------------------------------------------------------------------------
// the provider
// ---------------------------------------------------------------------------------------

const MODE = { jwks: 'ok', introspection: 'ok' };
const STATS = {
  discovery: 0, jwks: 0, token: 0, introspection: 0, revocation: 0, test: 0, other: 0,
};
const INTROSPECTIONS = []; // last 100: {auth, client_id, t}
const JWKS_TIMES = []; // last 100, ms since start (like introspection_requests[].t)
const T0 = Date.now();

function build(issuer) {
  const provider = new Provider(issuer, {
    adapter: BoundedAdapter,
    clients: [...CLIENTS.values()].map((c) => ({
      client_id: c.id,
      client_secret: c.secret,
      grant_types: c.introspectOnly ? [] : ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: c.auth,
    })),
    jwks: { keys: GENERATIONS.flatMap((g) => ALGS.map((a) => g[a].jwk)) },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // the introspector clients may introspect any token; other clients only their own
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => Boolean(CLIENTS.get(client.clientId)?.introspectOnly)
          || token.clientId === client.clientId,
      },
      // a client revokes only its own tokens (oidc-provider's default, without its notice)
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => {
          if (token.clientId !== client.clientId) {
            throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
          }
          return true;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => false,
        getResourceServerInfo: (_ctx, resource) => resourceServerInfo(resource),
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      const c = CLIENTS.get(token.clientId);
      if (!c) return undefined;
      const extra = { username: c.id };
      if (c.groups) extra.groups = [...c.groups];
      // RFC 7662 answers for client_credentials tokens carry no `sub` (no end user):
      // put the client id there, as JWT access tokens have it.
      if (!token.resourceServer || token.resourceServer.accessTokenFormat !== 'jwt') extra.sub = c.id;
      return extra;
    },
    ttl: {
      ClientCredentials: (ctx) => testTtl(ctx) ?? 600,
      AccessToken: (ctx) => testTtl(ctx) ?? 600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  provider.on('server_error', (_ctx, err) => {
    process.stderr.write(`server_error: ${err?.stack || err}\n`);
  });
  return provider;
}

// ---------------------------------------------------------------------------------------
// HTTP: test control, JWKS, counters; everything else goes to the provider
// ---------------------------------------------------------------------------------------

function sendJson(res, status, body, type = 'application/json') {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': type, 'content-length': data.length, 'cache-control': 'no-store' });
  res.end(data);
}

function readBody(req, limit = 1 << 20) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
      if (n > limit) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const b64u = (buf) => Buffer.from(buf).toString('base64url');

async function signJws({ alg = 'ES256', signer = 'current', header = {}, payload = {} }) {
  let key;
  let kid;
  let hmacSecret;
  if (signer === 'rsa-public-pem') {
    hmacSecret = GENERATIONS[KEYS.current].RS256.publicKey.export({ type: 'spki', format: 'pem' });
    kid = GENERATIONS[KEYS.current].RS256.kid;
  } else if (alg !== 'none') {
    const family = alg === 'HS256' ? null : alg;
    if (!family) throw new Error('HS256 needs signer rsa-public-pem');
    let k;
    if (signer === 'current') k = GENERATIONS[KEYS.current][family];
    else if (signer === 'foreign') k = await foreignKey(family);
    else if (/^g[0-9]+$/.test(signer) && GENERATIONS[Number(signer.slice(1))]) k = GENERATIONS[Number(signer.slice(1))][family];
    else throw new Error(`unknown signer ${signer}`);
    if (!k) throw new Error(`no ${alg} key for ${signer}`);
    key = k.privateKey;
    kid = k.kid;
  }
  const h = { alg, typ: 'at+jwt', ...(kid ? { kid } : {}), ...header };
  for (const [k, v] of Object.entries(h)) if (v === null) delete h[k];
  const input = `${b64u(JSON.stringify(h))}.${b64u(JSON.stringify(payload))}`;
  let sig;
  if (alg === 'none') sig = Buffer.alloc(0);
  else if (alg === 'HS256') sig = crypto.createHmac('sha256', hmacSecret).update(input).digest();
  else if (alg === 'RS256') sig = crypto.sign('sha256', Buffer.from(input), key);
  else if (alg === 'ES256') sig = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  else if (alg === 'EdDSA') sig = crypto.sign(null, Buffer.from(input), key);
  else throw new Error(`unsupported alg ${alg}`);
  return `${input}.${b64u(sig)}`;
}

async function tokenViaEndpoint(port, q) {
  const client = CLIENTS.get(q.get('client') || 'api-admin');
  if (!client || client.introspectOnly) throw new Error('unknown client');
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  if (q.get('resource')) form.set('resource', q.get('resource'));
  if (q.get('scope')) form.set('scope', q.get('scope'));
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (client.auth === 'client_secret_basic') {
    const enc = (s) => encodeURIComponent(s);
    headers.authorization = `Basic ${Buffer.from(`${enc(client.id)}:${enc(client.secret)}`).toString('base64')}`;
  } else {
    form.set('client_id', client.id);
    form.set('client_secret', client.secret);
  }
  if (q.get('ttl')) headers['x-test-ttl'] = q.get('ttl');
  const r = await fetch(`http://127.0.0.1:${port}/token`, { method: 'POST', headers, body: form.toString() });
  return { status: r.status, body: await r.json() };
}

async function handleTest(req, res, url, port) {
  STATS.test += 1;
  const q = url.searchParams;
  const p = url.pathname;
  if (p === '/__test/stats' && req.method === 'GET') {
    return sendJson(res, 200, {
      ...STATS,
      introspection_requests: INTROSPECTIONS,
      jwks_times_ms: JWKS_TIMES,
      keys: keyState(),
      mode: MODE,
      store: { size: STORE.size, max: STORE.max, evicted: STORE.evicted },
      uptime_ms: Date.now() - T0,
    });
  }
  if (req.method !== 'POST') return sendJson(res, 405, { error: 'method' });
  if (p === '/__test/reset') {
    for (const k of Object.keys(STATS)) STATS[k] = 0;
    INTROSPECTIONS.length = 0;
    JWKS_TIMES.length = 0;
    return sendJson(res, 200, { ok: true });
  }
  if (p === '/__test/rotate') {
    if (KEYS.current + 1 >= GENERATIONS.length) {
      return sendJson(res, 409, { error: `no generation left (start with --generations > ${GENERATIONS.length})` });
    }
    KEYS.current += 1;
    return sendJson(res, 200, keyState());
  }
  if (p === '/__test/retire') {
    KEYS.oldestPublished = KEYS.current;
    return sendJson(res, 200, keyState());
  }
  if (p === '/__test/token') {
    const out = await tokenViaEndpoint(port, q);
    return sendJson(res, out.status, out.body);
  }
  if (p === '/__test/groups') {
    const c = CLIENTS.get(q.get('client') || '');
    if (!c) return sendJson(res, 404, { error: 'unknown client' });
    if (q.get('none')) c.groups = null;
    else c.groups = (q.get('groups') || '').split('|').filter(Boolean);
    return sendJson(res, 200, { client: c.id, groups: c.groups });
  }
  if (p === '/__test/mode') {
    const j = q.get('jwks');
    const i = q.get('introspection');
    if (j && !['ok', 'error', 'garbage', 'hang'].includes(j)) return sendJson(res, 400, { error: 'jwks mode' });
    if (i && !['ok', 'error'].includes(i)) return sendJson(res, 400, { error: 'introspection mode' });
    if (j) MODE.jwks = j;
    if (i) MODE.introspection = i;
    return sendJson(res, 200, MODE);
  }
  if (p === '/__test/sign') {
    const body = JSON.parse((await readBody(req)).toString('utf8') || '{}');
    return sendJson(res, 200, { token: await signJws(body) });
  }
  return sendJson(res, 404, { error: 'unknown test endpoint' });
}

function countAndIntercept(req, res, url) {
  const p = url.pathname;
  if (p === '/.well-known/openid-configuration') STATS.discovery += 1;
  else if (p === '/token') STATS.token += 1;
  else if (p === '/token/revocation') STATS.revocation += 1;
  else if (p === '/token/introspection') {
    STATS.introspection += 1;
    const auth = req.headers.authorization || '';
    let entry = { auth: 'none', client_id: null, t: Date.now() - T0 };
    if (/^basic /i.test(auth)) {
      const dec = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
      const id = dec.includes(':') ? decodeURIComponent(dec.slice(0, dec.indexOf(':'))) : null;
      entry = { auth: 'basic', client_id: id, t: entry.t };
    } else if (auth) {
      entry.auth = 'other';
    } else {
      entry.auth = 'post-or-none';
    }
    INTROSPECTIONS.push(entry);
    if (INTROSPECTIONS.length > 100) INTROSPECTIONS.shift();
    if (MODE.introspection === 'error') {
      sendJson(res, 500, { error: 'server_error', error_description: 'test mode' });
      return true;
    }
  } else if (p === '/jwks') {
    STATS.jwks += 1;
    JWKS_TIMES.push(Date.now() - T0);
    if (JWKS_TIMES.length > 100) JWKS_TIMES.shift();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: 'method' });
      return true;
    }
    if (MODE.jwks === 'error') sendJson(res, 500, { error: 'test mode' });
    else if (MODE.jwks === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"keys": [ not json');
    } else if (MODE.jwks === 'hang') {
      // answers after 30 s (the caller's timeout fires first); the socket closes with the server
      setTimeout(() => sendJson(res, 503, { error: 'slow' }), 30000).unref();
    } else sendJson(res, 200, publishedJwks(), 'application/jwk-set+json; charset=utf-8');
    return true;
  } else STATS.other += 1;
  return false;
}

let handler = (_req, res) => {
  res.writeHead(503);
  res.end();
};
const server = http.createServer((req, res) => handler(req, res));
server.keepAliveTimeout = 30000;

server.listen(args.port, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = build(issuer);
  const providerCallback = provider.callback();
  handler = (req, res) => {
    let url;
    try {
      url = new URL(req.url, issuer);
    } catch {
      return sendJson(res, 400, { error: 'bad target' });
    }
    if (url.pathname.startsWith('/__test/')) {
      handleTest(req, res, url, port).catch((err) => {
        if (!res.headersSent) sendJson(res, 500, { error: String(err?.message || err) });
        else res.destroy();
      });
      return undefined;
    }
    if (countAndIntercept(req, res, url)) return undefined;
    if (!args.quiet) process.stderr.write(`${req.method} ${url.pathname}\n`);
    // The provider builds endpoint URLs from Host: keep discovery on the issuer whatever
    // authority the caller used (Envoy may send the cluster name).
    req.headers.host = `127.0.0.1:${port}`;
    return providerCallback(req, res);
  };
  process.stdout.write(`LISTENING ${port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
