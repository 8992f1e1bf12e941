#!/usr/bin/env python3
"""Code bytes per crate in a wasm built with names (CARGO_PROFILE_RELEASE_STRIP=false):
    python3 tools/wasm_sizes.py target/wasm32-wasip1/release/barbican.wasm
Reads the code and name sections; used to find what grows dist/barbican.wasm."""
import collections
import re
import sys

data = open(sys.argv[1], 'rb').read()
def leb(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1; r |= (x & 0x7f) << s; s += 7
        if x < 0x80: return r, i
i = 8; code_sizes = []; names = {}; nimports = 0
while i < len(data):
    sid = data[i]; i += 1; size, i = leb(data, i); end = i + size
    if sid == 2:
        n, j = leb(data, i)
        for _ in range(n):
            l, j = leb(data, j); j += l; l, j = leb(data, j); j += l
            kind = data[j]; j += 1
            if kind == 0: _, j = leb(data, j); nimports += 1
            elif kind == 1: j += 1; f, j = leb(data, j); _, j = leb(data, j); j = j + (leb(data,j)[1]-j if f & 1 else 0)
            elif kind == 2: f, j = leb(data, j); _, j = leb(data, j); j = (leb(data, j)[1] if f & 1 else j)
            elif kind == 3: j += 2
    elif sid == 10:
        n, j = leb(data, i)
        for _ in range(n):
            l, j = leb(data, j); code_sizes.append(l); j += l
    elif sid == 0:
        l, j = leb(data, i); nm = data[j:j+l].decode(); j += l
        if nm == 'name':
            while j < end:
                sub = data[j]; j += 1; ssz, j = leb(data, j); send = j + ssz
                if sub == 1:
                    n, k = leb(data, j)
                    for _ in range(n):
                        idx, k = leb(data, k); l, k = leb(data, k); names[idx] = data[k:k+l].decode('utf8', 'replace'); k += l
                j = send
    i = end
agg = collections.Counter()
for fi, sz in enumerate(code_sizes):
    nm = names.get(fi + nimports, '?')
    m = re.search(r'(rsa|crypto_bigint|p256|p384|primefield|primeorder|elliptic_curve|ecdsa|ed25519|curve25519|sha2|regex_lite|serde_json|serde_path_to_error|serde|barbican|proxy_wasm|core|alloc|std|hmac_sha256|base64|digest|der|spki|pkcs1|subtle)', nm)
    agg[m.group(1) if m else 'other'] += sz
print(sum(code_sizes), 'code bytes')
for k, v in agg.most_common(25):
    print(f"{v:8d} {k}")
