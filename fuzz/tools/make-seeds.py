#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ (python3, standard library only).

Run from anywhere: `python3 fuzz/tools/make-seeds.py`. Deterministic; the
output is committed, so run it again only to change the seeds. It encodes by
hand what promcast's own encoders produce (snappy blocks of protobuf, XOR
chunks, CRC32C-framed streams), checked against the golden chunks pinned in
src/remote/xor/tests.rs.
"""

import math
import os
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


# --- protobuf -------------------------------------------------------------

def varint(x):
    x &= (1 << 64) - 1  # negative int64s as ten-byte two's complement
    out = bytearray()
    while x >= 0x80:
        out.append(x & 0x7F | 0x80)
        x >>= 7
    out.append(x)
    return bytes(out)


def field_varint(num, x):
    return varint(num << 3) + varint(x) if x else b""


def field_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_double(num, x):
    return varint(num << 3 | 1) + struct.pack("<d", x) if x else b""


def packed(num, xs):
    return field_bytes(num, b"".join(varint(x) for x in xs)) if xs else b""


EQ, NEQ, RE, NRE = range(4)
SAMPLES, STREAMED_XOR_CHUNKS = 0, 1


def label_matcher(kind, name, value):
    return field_varint(1, kind) + field_bytes(2, name) + field_bytes(3, value)


def query(start, end, matchers, step_ms=0):
    out = field_varint(1, start) + field_varint(2, end)
    out += b"".join(field_bytes(3, label_matcher(*m)) for m in matchers)
    if step_ms:
        out += field_bytes(4, field_varint(1, step_ms))  # ReadHints.step_ms
    return out


def read_request(queries, accepted=()):
    return b"".join(field_bytes(1, q) for q in queries) + packed(2, list(accepted))


def label(name, value):
    return field_bytes(1, name) + field_bytes(2, value)


def chunk(samples):
    return (
        field_varint(1, samples[0][0])
        + field_varint(2, samples[-1][0])
        + field_varint(3, 1)  # XOR
        + field_bytes(4, encode_xor(samples))
    )


def chunked_read_response(query_index, series):
    out = b""
    for labels, chunks in series:
        body = b"".join(field_bytes(1, label(*l)) for l in labels)
        body += b"".join(field_bytes(2, chunk(c)) for c in chunks)
        out += field_bytes(1, body)
    return out + field_varint(2, query_index)


# --- snappy (block format, literals only: valid, if not small) -------------

def snappy(data):
    out = bytearray(varint(len(data)))
    for i in range(0, len(data), 256):
        lit = data[i:i + 256]
        if len(lit) <= 60:
            out.append((len(lit) - 1) << 2)
        else:
            out += bytes([60 << 2, len(lit) - 1])
        out += lit
    return bytes(out)


# --- XOR chunks, as src/remote/xor.rs encode_xor -------------------------

class Bits:
    def __init__(self):
        self.bits = []

    def write(self, value, n):
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def bytes(self):
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(
            int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8)
        )


def write_uvarint(w, x):
    for b in varint(x):
        w.write(b, 8)


def fits(dod, nbits):
    half = 1 << (nbits - 1)
    return -(half - 1) <= dod <= half


def write_dod(w, dod):
    if dod == 0:
        w.write(0, 1)
        return
    for prefix, prefix_len, nbits in ((0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)):
        if fits(dod, nbits):
            w.write(prefix, prefix_len)
            w.write(dod & ((1 << nbits) - 1), nbits)
            return
    w.write(0b1111, 4)
    w.write(dod & ((1 << 64) - 1), 64)


def clz64(x):
    return 64 - x.bit_length()


def ctz64(x):
    return (x & -x).bit_length() - 1


def write_value(w, v, prev, window):
    xor = v ^ prev
    if xor == 0:
        w.write(0, 1)
        return window
    w.write(1, 1)
    leading, trailing = min(clz64(xor), 31), ctz64(xor)
    if window and leading >= window[0] and trailing >= window[1]:
        w.write(0, 1)
        w.write(xor >> window[1], 64 - window[0] - window[1])
        return window
    significant = 64 - leading - trailing
    w.write(1, 1)
    w.write(leading, 5)
    w.write(significant & 0x3F, 6)
    w.write(xor >> trailing, significant)
    return (leading, trailing)


def f64_bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def encode_xor(samples):
    w = Bits()
    w.write(len(samples), 16)
    prev_t = prev_delta = prev_v = 0
    window = None
    for i, (t, v) in enumerate(samples):
        v = f64_bits(v)
        if i == 0:
            write_uvarint(w, (t << 1) ^ (t >> 63))
            w.write(v, 64)
        elif i == 1:
            prev_delta = t - prev_t
            write_uvarint(w, prev_delta)
            window = write_value(w, v, prev_v, window)
        else:
            delta = t - prev_t
            write_dod(w, delta - prev_delta)
            prev_delta = delta
            window = write_value(w, v, prev_v, window)
        prev_t, prev_v = t, v
    return w.bytes()


# --- stream frames ---------------------------------------------------------

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def frame(message):
    return varint(len(message)) + struct.pack(">I", crc32c(message)) + message


# --- self-checks against src/remote/xor/tests.rs golden tests -------------

assert encode_xor([(1000, 1.0), (2000, 1.0), (3000, 2.0)]) == bytes.fromhex(
    "0003d00f3ff0000000000000e8073097ffc0"
)
assert encode_xor([(0, 2.0), (10, 3.0), (19, 2.0)]) == bytes.fromhex(
    "00030040000000000000000ad80effFE80".lower()
)
assert crc32c(b"123456789") == 0xE3069283


# --- the seeds -------------------------------------------------------------

def walk(n, start=1_700_000_000_000, step=15_000):
    return [(start + i * step, round(math.sin(i / 5) * 100, 2)) for i in range(n)]


def with_dods(dods):
    """Samples whose third and later timestamps have these delta-of-deltas."""
    ts = [1_700_000_000_000, 1_700_000_600_000]
    for d in dods:
        ts.append(ts[-1] + (ts[-1] - ts[-2]) + d)
    return [(t, float(i)) for i, t in enumerate(ts)]


# Each bucket's edges, in increasing time.
dod_buckets = with_dods(
    [0, 1, -1, 8192, -8191, 65536, -65535, 524288, -524287, 524289, 1 << 40]
)
assert all(a[0] < b[0] for a, b in zip(dod_buckets, dod_buckets[1:]))
# Time going backwards: decodes, but does not re-encode.
unsorted = with_dods([0, -(1 << 40)])

specials = [
    (-5, 0.0), (0, -0.0), (1, math.inf), (2, -math.inf),
    (3, math.nan), (4, 5e-324), (5, 1.7976931348623157e308), (6, 1.0),
]

seeds = {
    "read_request": {
        "empty": snappy(b""),
        "grafana": snappy(read_request(
            [query(1_000, 301_000, [(RE, "__name__", "predicted_.*")], step_ms=60_000)],
            [STREAMED_XOR_CHUNKS, SAMPLES],
        )),
        "all_matcher_types": snappy(read_request([
            query(1_700_000_000_000, 1_700_003_600_000, [
                (EQ, "__name__", "anomaly_score_node_cpu"),
                (NEQ, "instance", ""),
                (RE, "job", "node|api"),
                (NRE, "zone", "eu-.*|[a-z]+[0-9]{1,3}"),
            ]),
            query(-1, 0, [(RE, "__name__", "predicted_(lower|upper)_.+"), (NRE, "x", "(?i)ü\\w*")]),
        ], [SAMPLES])),
        "bad_regex": snappy(read_request([query(0, 1, [(RE, "a", "(")])])),
    },
    "decode_xor": {
        "empty": encode_xor([]),
        "one": encode_xor([(1_700_000_000_000, 42.5)]),
        "golden": encode_xor([(1000, 1.0), (2000, 1.0), (3000, 2.0)]),
        "negative_dod": encode_xor([(0, 2.0), (10, 3.0), (19, 2.0)]),
        "dod_buckets": encode_xor(dod_buckets),
        "unsorted": encode_xor(unsorted),
        "special_values": encode_xor(specials),
        "walk": encode_xor(walk(40)),
    },
    "read_frames": {
        "two_frames": frame(chunked_read_response(0, [
            ([("__name__", "predicted_cpu"), ("job", "node")], [walk(20), walk(5, start=1_700_000_300_000)]),
        ])) + frame(chunked_read_response(1, [([("__name__", "x")], [specials])])),
        "one_series": frame(chunked_read_response(7, [([("__name__", "predicted_x")], [[(1, 1.0)]])])),
        "dod_buckets": frame(chunked_read_response(0, [([("a", "b")], [dod_buckets])])),
    },
    "parse_selector": {
        "full": b'predicted_cpu{instance="a", horizon=~"1h|6h",job!="x\\"y"}',
        "name_regex": b'{__name__=~"predicted_.*"}',
        "bare": b"up",
        "quotes_escapes": b"anomaly_score_node:rate5m { job = 'node', zone!~'eu-\\n.*\\t' , }",
    },
}

for target, files in seeds.items():
    directory = os.path.join(ROOT, target)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(files)} seeds, {sum(map(len, files.values()))} bytes")
