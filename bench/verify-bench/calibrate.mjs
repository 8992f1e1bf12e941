// This machine's speed in this sitting: µs per signature verification with node:crypto
// (OpenSSL, native code) for the algorithms verify-bench times inside V8. Not Barbican's
// cost; a yardstick for comparing the absolute wasm numbers across sittings.
import { generateKeyPairSync, sign, verify } from 'node:crypto';

const msg = Buffer.alloc(400, 'x');
const cases = {
  RS256: { pair: generateKeyPairSync('rsa', { modulusLength: 2048 }), hash: 'sha256' },
  ES256: { pair: generateKeyPairSync('ec', { namedCurve: 'P-256' }), hash: 'sha256', dsaEncoding: 'ieee-p1363' },
  EdDSA: { pair: generateKeyPairSync('ed25519'), hash: null },
};

const out = {};
for (const [alg, c] of Object.entries(cases)) {
  const opts = (key) => (c.dsaEncoding ? { key, dsaEncoding: c.dsaEncoding } : key);
  const sig = sign(c.hash, msg, opts(c.pair.privateKey));
  const once = () => {
    if (!verify(c.hash, msg, opts(c.pair.publicKey), sig)) throw new Error(`${alg}: bad signature`);
  };
  for (let i = 0; i < 200; i++) once();
  const per = [];
  for (let b = 0; b < 5; b++) {
    const n = 500;
    const t0 = process.cpuUsage();
    for (let i = 0; i < n; i++) once();
    const d = process.cpuUsage(t0);
    per.push((d.user + d.system) / n);
  }
  per.sort((a, b) => a - b);
  out[alg] = { us: Math.round(per[2] * 10) / 10 };
}
console.log(JSON.stringify(out));
