#!/usr/bin/env node
// TEST OpenID provider for Barbican's end-to-end tests (npm `oidc-provider`, pinned in
// package.json). Loopback only; never use it for anything else.
//
//   node server.mjs --port 0 [--generations 3] [--max-objects 200000] [--quiet]
//                   [--redirect-uri URL]... [--post-logout-redirect-uri URL]... [--id-token-ttl 3600]
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
// OpenID Connect for a relying party (Barbican's native sessions):
//   End users (password login):
//     alice / alice-password: sub alice, preferred_username alice, name "Alice Liddell",
//       email alice@example.test, email_verified true, groups [admins, users]
//     bob / bob-password: sub bob, preferred_username bob, name Bob, email bob@example.test,
//       email_verified true, groups [users]
//   Scopes -> claims: openid (sub), profile (preferred_username, name), email (email,
//     email_verified), groups (groups). `conformIdTokenClaims: false`: the claims of the
//     granted scopes are IN THE ID TOKEN (code flow and implicit alike), not only at
//     /me (userinfo). ID tokens also carry iss, aud (= client_id), nonce (when sent), iat,
//     exp (--id-token-ttl, default 3600 s); no sid, no auth_time (unless max_age is sent).
//   Clients (redirect_uris http://app.test/.barbican/callback and
//     http://app.test:8080/.barbican/callback + every --redirect-uri; post_logout_redirect_uris
//     http://app.test/ and http://app.test/bye + every --post-logout-redirect-uri; compared as
//     exact strings):
//     barbican-code       client_secret_basic, secret barbican-code-secret; response_type code,
//                         grant authorization_code; ID token ES256
//     barbican-code-post  client_secret_post, secret barbican-code-post-secret; as above;
//                         ID token RS256
//     (oidc-provider takes client_secret_basic and client_secret_post as one method: either
//     works for both clients; a wrong secret is 401 invalid_client)
//     barbican-implicit   response_type id_token only, grant implicit, auth none, ID token
//                         ES256. The RP must send response_mode=form_post (the default for
//                         id_token is fragment) and a nonce (else an error, form_post-ed too).
//                         Tests only: the provider refuses http redirect URIs for implicit
//                         clients; Client.Schema.prototype.invalidate ignores the
//                         `implicit-force-https` / `implicit-forbid-localhost` checks here.
//   PKCE: required for every code-flow request (S256 only; without code_challenge the
//     provider redirects to the callback with error=invalid_request "...requires PKCE...").
//   GET|POST /auth (authorization endpoint). Callback answers: code flow: 303 to
//     `<redirect_uri>?code=...&state=...&iss=<issuer>` (RFC 9207 `iss` is always added);
//     form_post: a 200 HTML page `<form method="post" action="<redirect_uri>">` with hidden
//     inputs (id_token, state; errors: error, error_description, state, status 400) and a
//     script that submits it on DOMContentLoaded. POST /token (grant_type authorization_code,
//     code, redirect_uri, code_verifier, client auth): {access_token (opaque), id_token,
//     scope, expires_in, token_type}; codes live 60 s and are single-use.
//   Login (no consent screen): /auth redirects (303, relative Location) to
//     /interaction/<uid> (cookie `_interaction`, Path=/interaction/<uid>), which is a 200
//     page (header `X-Test-IdP-Page: login`) with
//       <form id="login" method="post" action="/interaction/<uid>/login">
//         username (text), password (password)
//     A right password: 303 to /auth/<uid> (the resume route; cookie `_interaction_resume`),
//     which sets the IdP session cookie `_session` (Path=/, HttpOnly, SameSite=Lax, signed:
//     `_session.sig`) and 303s to the callback. A wrong password or unknown user: 200, the
//     form again with "Invalid username or password." (the interaction stays usable). The
//     RP clients' grants are made on the fly with every requested OIDC scope and claim
//     (`loadExistingGrant`), so no consent prompt ever shows. With a `_session` the next
//     /auth of that browser (any client) skips the form (SSO); prompt=login forces it.
//   Logout: GET|POST /session/end with client_id or id_token_hint, optional
//     post_logout_redirect_uri (must be registered for that client; ignored without
//     client_id/id_token_hint: the end is then /session/end/success, `X-Test-IdP-Page:
//     logged-out`) and state. The provider's confirmation question is replaced: a 200 page
//     (`X-Test-IdP-Page: logout`) whose form (hidden xsrf + logout=yes) posts itself to
//     /session/end/confirm by script (a scripted client submits that one form; without an
//     IdP session the provider sends its own such form). The confirm POST ends the IdP
//     session (deletes `_session`, revokes the session's grants) and 303s to
//     `<post_logout_redirect_uri>[?state=...]`. An unregistered post_logout_redirect_uri is
//     a 400 JSON error.
//
// Keys: `--generations N` generations are made at start-up, each with one RSA-2048 (RS256),
// one EC P-256 (ES256) and one Ed25519 (EdDSA) key, kids `rs256-g<i>`, `es256-g<i>`,
// `eddsa-g<i>`. Generation 0 signs at first (JWT access tokens and ID tokens alike: after
// /__test/rotate, ID tokens carry the new generation's kid); /jwks publishes the generations
// from the oldest not retired up to the current one.
//
// Test control (loopback, JSON answers):
//   POST /__test/rotate        the next generation signs new tokens; old keys stay published
//   POST /__test/retire        unpublish every generation older than the current one
//   GET  /__test/stats         request counts (discovery, jwks, token, introspection,
//                              revocation, test, other; authorization = GET/POST /auth, not
//                              the resume /auth/<uid>; login = successful logins,
//                              login_failed; token_code = /token requests with
//                              grant_type=authorization_code, answered or refused;
//                              end_session = GET/POST /session/end, not .../confirm),
//                              the last introspection calls, key state, store size
//   POST /__test/reset         zero the counters (all of them)
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
// not in the package's public API (it has no `exports` map): see `selectForSign` below
import KeyStore from 'oidc-provider/lib/helpers/keystore.js';

const generateKeyPair = promisify(crypto.generateKeyPair);

// ---------------------------------------------------------------------------------------
// arguments
// ---------------------------------------------------------------------------------------

function checkedUrl(flag, value) {
  const u = new URL(value); // throws on garbage
  if (!['http:', 'https:'].includes(u.protocol) || u.hash) throw new Error(`${flag}: http(s) URL without fragment`);
  return value;
}

function parseArgs(argv) {
  const out = {
    port: 0, generations: 3, maxObjects: 200000, quiet: false, redirectUris: [], postLogoutUris: [],
    idTokenTtl: 3600, userGroups: [],
  };
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
    else if (a === '--id-token-ttl') out.idTokenTtl = Number(next());
    // registered exactly as given (the provider compares redirect URIs as strings)
    else if (a === '--redirect-uri') out.redirectUris.push(checkedUrl(a, next()));
    else if (a === '--post-logout-redirect-uri') out.postLogoutUris.push(checkedUrl(a, next()));
    // `--user-groups alice=homelab-users|homelab-admins`: replace a user's groups claim
    else if (a === '--user-groups') {
      const [user, groups] = next().split('=', 2);
      out.userGroups.push([user, (groups || '').split('|').filter(Boolean)]);
    }
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) throw new Error('bad --port');
  if (!Number.isInteger(out.generations) || out.generations < 1 || out.generations > 32) {
    throw new Error('bad --generations (1..32)');
  }
  if (!Number.isInteger(out.idTokenTtl) || out.idTokenTtl < 1) throw new Error('bad --id-token-ttl (>= 1)');
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
// end users and the relying-party clients (Barbican's native OIDC sessions)
// ---------------------------------------------------------------------------------------

const USERS = new Map([
  ['alice', {
    password: 'alice-password',
    claims: {
      sub: 'alice', preferred_username: 'alice', name: 'Alice Liddell',
      email: 'alice@example.test', email_verified: true, groups: ['admins', 'users'],
    },
  }],
  ['bob', {
    password: 'bob-password',
    claims: {
      sub: 'bob', preferred_username: 'bob', name: 'Bob',
      email: 'bob@example.test', email_verified: true, groups: ['users'],
    },
  }],
]);

for (const [user, groups] of args.userGroups) {
  if (!USERS.has(user)) throw new Error(`--user-groups: no user ${user}`);
  USERS.get(user).claims.groups = groups;
}

// scope -> claims it releases (the provider also makes each key a supported scope)
const CLAIMS = {
  openid: ['sub'],
  profile: ['preferred_username', 'name'],
  email: ['email', 'email_verified'],
  groups: ['groups'],
};

const RP_REDIRECT_URIS = [
  'http://app.test/.barbican/callback',
  'http://app.test:8080/.barbican/callback',
  ...args.redirectUris,
];
const RP_POST_LOGOUT_URIS = ['http://app.test/', 'http://app.test/bye', ...args.postLogoutUris];

const RP_CLIENTS = new Map([
  ['barbican-code', {
    client_secret: 'barbican-code-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    id_token_signed_response_alg: 'ES256',
  }],
  ['barbican-code-post', {
    client_secret: 'barbican-code-post-secret',
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
  }],
  ['barbican-implicit', {
    token_endpoint_auth_method: 'none',
    grant_types: ['implicit'],
    response_types: ['id_token'],
    id_token_signed_response_alg: 'ES256',
  }],
].map(([id, meta]) => [id, {
  client_id: id,
  ...meta,
  redirect_uris: [...RP_REDIRECT_URIS],
  post_logout_redirect_uris: [...RP_POST_LOGOUT_URIS],
}]));

// ---------------------------------------------------------------------------------------
// the provider
// ---------------------------------------------------------------------------------------

const MODE = { jwks: 'ok', introspection: 'ok' };
const STATS = {
  discovery: 0, jwks: 0, token: 0, introspection: 0, revocation: 0, test: 0, other: 0,
  authorization: 0, login: 0, login_failed: 0, token_code: 0, end_session: 0,
};
const INTROSPECTIONS = []; // last 100: {auth, client_id, t}
const JWKS_TIMES = []; // last 100, ms since start (like introspection_requests[].t)
const T0 = Date.now();

// ID tokens (and anything else the provider signs without naming a kid) use the current
// generation's key of the wanted alg, so /__test/rotate moves them too; the provider itself
// would take the first key of that alg (generation 0) for ever.
const selectForSignOrig = KeyStore.prototype.selectForSign;
KeyStore.prototype.selectForSign = function selectForSign(options) {
  if (options && options.kid === undefined && ALGS.includes(options.alg)) {
    const found = selectForSignOrig.call(this, { ...options, kid: kidFor(options.alg, KEYS.current) });
    if (found.length) return found;
  }
  return selectForSignOrig.call(this, options);
};

// The relying-party clients get every OIDC scope and claim they ask for, without a consent
// screen: a grant is created (or the session's grant extended) right here, so the consent
// prompt never fires and the only interaction is the login form.
async function loadExistingGrant(ctx) {
  const { client, session, result } = ctx.oidc;
  const grantId = result?.consent?.grantId || session.grantIdFor(client.clientId);
  let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
  if (!RP_CLIENTS.has(client.clientId) || !session.accountId) return grant;
  grant ||= new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
  const scopes = [...ctx.oidc.requestParamOIDCScopes];
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  const claims = [...ctx.oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  await grant.save();
  return grant;
}

async function findAccount(_ctx, sub) {
  const user = USERS.get(sub);
  if (!user) return undefined;
  return {
    accountId: sub,
    // every claim; the provider keeps those the granted scopes / claims parameter release
    claims: async () => structuredClone(user.claims),
  };
}

// logout confirmation skipped: the provider's confirm form (hidden `xsrf`), plus
// `logout=yes`, auto-submitted by script, shaped like its own form_post pages
async function logoutSource(ctx, form) {
  ctx.set('x-test-idp-page', 'logout');
  ctx.body = `<!DOCTYPE html>
<html>
<head>
  <title>Signing out</title>
  <script>document.addEventListener('DOMContentLoaded', function () { document.forms[0].submit() });</script>
</head>
<body>
  ${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>')}
</body>
</html>`;
}

async function postLogoutSuccessSource(ctx) {
  ctx.set('x-test-idp-page', 'logged-out');
  ctx.body = '<!DOCTYPE html>\n<html><head><title>Signed out</title></head><body><p>Signed out.</p></body></html>';
}

function build(issuer) {
  const provider = new Provider(issuer, {
    adapter: BoundedAdapter,
    clients: [
      ...[...CLIENTS.values()].map((c) => ({
        client_id: c.id,
        client_secret: c.secret,
        grant_types: c.introspectOnly ? [] : ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: c.auth,
      })),
      ...[...RP_CLIENTS.values()].map((c) => structuredClone(c)),
    ],
    claims: CLAIMS,
    // scope claims go into ID tokens even when an access token is issued too (code flow);
    // with the default (true) they would be in userinfo only
    conformIdTokenClaims: false,
    findAccount,
    loadExistingGrant,
    // PKCE (S256, the only method) required for every client that uses the code flow
    pkce: { required: () => true },
    interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
    jwks: { keys: GENERATIONS.flatMap((g) => ALGS.map((a) => g[a].jwk)) },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
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
      AuthorizationCode: 60,
      IdToken: args.idTokenTtl,
      Interaction: 600,
      Session: 86400,
      Grant: 86400,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  // Tests only: the implicit client's redirect URIs are http (loopback tests have no TLS);
  // oidc-provider refuses those for implicit clients (DESIGN.md §5).
  const { invalidate } = provider.Client.Schema.prototype;
  provider.Client.Schema.prototype.invalidate = function invalidateUnlessImplicitHttp(message, code) {
    if (code === 'implicit-force-https' || code === 'implicit-forbid-localhost') return;
    invalidate.call(this, message, code);
  };
  // token_code: token requests with grant_type=authorization_code (answered or refused)
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'token' && ctx.oidc.params?.grant_type === 'authorization_code') STATS.token_code += 1;
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
  else if (p === '/auth') STATS.authorization += 1; // not the resume route /auth/<uid>
  else if (p === '/session/end') STATS.end_session += 1; // not /session/end/confirm
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

// ---------------------------------------------------------------------------------------
// the login interaction (no consent screen: see loadExistingGrant)
// ---------------------------------------------------------------------------------------

const htmlEscape = (v) => String(v).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function sendHtml(res, status, html, page) {
  const data = Buffer.from(html);
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8', 'content-length': data.length,
    'cache-control': 'no-store', 'x-test-idp-page': page,
  });
  res.end(data);
}

function loginPage(res, details, { error = null, username = '' } = {}) {
  const { uid, params } = details;
  sendHtml(res, 200, `<!DOCTYPE html>
<html>
<head><title>Sign in - Barbican test IdP</title></head>
<body>
  <h1>Sign in</h1>
  <p>client <code>${htmlEscape(params.client_id)}</code>, scope <code>${htmlEscape(params.scope || '')}</code></p>
  ${error ? `<p class="error" id="error">${htmlEscape(error)}</p>` : ''}
  <form id="login" method="post" action="/interaction/${htmlEscape(uid)}/login">
    <input type="text" name="username" value="${htmlEscape(username)}" autofocus>
    <input type="password" name="password" value="">
    <button type="submit">Sign in</button>
  </form>
</body>
</html>`, 'login');
}

async function handleInteraction(provider, req, res, url) {
  const m = /^\/interaction\/([A-Za-z0-9_-]{1,64})(\/login)?$/.exec(url.pathname);
  if (!m) return sendHtml(res, 404, '<p>no such interaction route</p>', 'error');
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return sendHtml(res, 400, `<p>interaction: ${htmlEscape(err?.message || err)}</p>`, 'error');
  }
  if (details.uid !== m[1]) return sendHtml(res, 400, '<p>interaction uid mismatch</p>', 'error');
  if (!m[2]) {
    if (req.method !== 'GET') return sendHtml(res, 405, '<p>method</p>', 'error');
    if (details.prompt.name === 'login') return loginPage(res, details);
    // any other prompt (consent for a non-RP client, ...): not served by this test IdP
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: `test IdP: prompt ${details.prompt.name} not supported`,
    }, { mergeWithLastSubmission: false });
  }
  if (req.method !== 'POST') return sendHtml(res, 405, '<p>method</p>', 'error');
  const form = new URLSearchParams((await readBody(req, 64 << 10)).toString('utf8'));
  const username = form.get('username') || '';
  const user = USERS.get(username);
  const password = Buffer.from(form.get('password') || '');
  const expected = Buffer.from(user ? user.password : 'x');
  const ok = Boolean(user) && password.length === expected.length && crypto.timingSafeEqual(password, expected);
  if (!ok) {
    STATS.login_failed += 1;
    return loginPage(res, details, { error: 'Invalid username or password.', username });
  }
  STATS.login += 1;
  return provider.interactionFinished(req, res, {
    login: { accountId: username, amr: ['pwd'] },
  }, { mergeWithLastSubmission: false });
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
    if (url.pathname.startsWith('/interaction/')) {
      handleInteraction(provider, req, res, url).catch((err) => {
        process.stderr.write(`interaction error: ${err?.stack || err}\n`);
        if (!res.headersSent) sendHtml(res, 500, `<p>${htmlEscape(err?.message || err)}</p>`, 'error');
        else res.destroy();
      });
      return undefined;
    }
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
