#!/usr/bin/env node
// Verifies compact JWS tokens against a JWKS with node:crypto only (independent of
// oidc-provider), for the test IdP's self-tests.
//   stdin:  {"jwks": {"keys": [...]}, "tokens": ["eyJ...", ...]}
//   stdout: [{"ok": bool, "reason": str|null, "header": {...}|null, "payload": {...}|null}, ...]
// Only RS256, ES256 and EdDSA with a matching `kid` verify; everything else is ok=false.

import * as crypto from 'node:crypto';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const { jwks, tokens } = JSON.parse(Buffer.concat(chunks).toString('utf8'));

function decodePart(part) {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
}

function verify(token) {
  const parts = String(token).split('.');
  if (parts.length !== 3) return { ok: false, reason: 'not a compact JWS', header: null, payload: null };
  const header = decodePart(parts[0]);
  const payload = decodePart(parts[1]);
  if (!header || !payload) return { ok: false, reason: 'undecodable', header, payload };
  const jwk = (jwks.keys || []).find((k) => k.kid === header.kid);
  if (!jwk) return { ok: false, reason: 'no key with that kid', header, payload };
  if (jwk.alg && jwk.alg !== header.alg) return { ok: false, reason: 'alg differs from the key\'s', header, payload };
  const data = Buffer.from(`${parts[0]}.${parts[1]}`);
  const sig = Buffer.from(parts[2], 'base64url');
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  let ok;
  switch (header.alg) {
    case 'RS256': ok = jwk.kty === 'RSA' && crypto.verify('sha256', data, key, sig); break;
    case 'ES256': ok = jwk.kty === 'EC' && jwk.crv === 'P-256'
      && crypto.verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig); break;
    case 'EdDSA': ok = jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && crypto.verify(null, data, key, sig); break;
    default: return { ok: false, reason: `alg ${header.alg} not accepted`, header, payload };
  }
  return { ok, reason: ok ? null : 'bad signature', header, payload };
}

process.stdout.write(JSON.stringify(tokens.map(verify)));
