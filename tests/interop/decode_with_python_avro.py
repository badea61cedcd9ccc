#!/usr/bin/python3
"""Interop check: records written by flashsale's C codec decode with Apache Avro for Python.

For every sample written by write_samples:
  1. the header is Avro single-object encoding (0xC3 0x01);
  2. the 8-byte fingerprint equals CRC-64-AVRO (computed here, from the Avro specification)
     of the Parsing Canonical Form that *Python's* Avro library derives from the schema file;
  3. the payload decodes with avro.io.DatumReader, consuming every byte, and equals the value
     the C side wrote (compared in Avro's JSON encoding).
Exits non-zero on the first mismatch. Uses Debian's python3-avro (run with /usr/bin/python3).
"""
import io
import json
import os
import sys

import avro.io
import avro.schema

EMPTY = 0xC15D213AA4D7A795
TABLE = []
for i in range(256):
    fp = i
    for _ in range(8):
        fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
    TABLE.append(fp & 0xFFFFFFFFFFFFFFFF)


def crc64_avro(data: bytes) -> int:
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ b) & 0xFF]
    return fp


def to_avro_json(schema, datum):
    """Python datum -> Avro JSON encoding (unions as {"type": value} unless null)."""
    t = schema.type
    if t == "union":
        if datum is None:
            return None
        for branch in schema.schemas:
            if branch.type != "null" and avro.io.validate(branch, datum):
                name = getattr(branch, "fullname", None) or branch.type
                return {name: to_avro_json(branch, datum)}
        raise ValueError("no branch for %r" % (datum,))
    if t == "record":
        return {f.name: to_avro_json(f.type, datum[f.name]) for f in schema.fields}
    if t == "array":
        return [to_avro_json(schema.items, x) for x in datum]
    if t == "map":
        return {k: to_avro_json(schema.values, v) for k, v in datum.items()}
    if t in ("bytes", "fixed"):
        return datum.decode("latin-1")
    if t == "float":
        return float(datum)
    return datum


def normalise_c_json(schema, value):
    """avro-c names union branches by short name; use full names like the Python side."""
    t = schema.type
    if t == "union":
        if value is None:
            return None
        (k, v), = value.items()
        for branch in schema.schemas:
            if branch.type == k or getattr(branch, "name", None) == k or getattr(branch, "fullname", None) == k:
                name = getattr(branch, "fullname", None) or branch.type
                return {name: normalise_c_json(branch, v)}
        raise ValueError("unknown branch %s" % k)
    if t == "record":
        return {f.name: normalise_c_json(f.type, value[f.name]) for f in schema.fields}
    if t == "array":
        return [normalise_c_json(schema.items, x) for x in value]
    if t == "map":
        return {k: normalise_c_json(schema.values, v) for k, v in value.items()}
    return value


def main(d):
    names = sorted(f[:-4] for f in os.listdir(d) if f.endswith(".bin"))
    if not names:
        print("no samples found in", d)
        return 1
    for name in names:
        raw = open(os.path.join(d, name + ".bin"), "rb").read()
        schema = avro.schema.parse(open(os.path.join(d, name + ".avsc")).read())
        expected = json.load(open(os.path.join(d, name + ".json")))
        assert raw[:2] == b"\xc3\x01", "%s: bad magic %r" % (name, raw[:2])
        fp = int.from_bytes(raw[2:10], "little")
        canonical = schema.canonical_form
        want = crc64_avro(canonical.encode("utf-8"))
        assert fp == want, "%s: fingerprint %016x, Python's canonical form gives %016x\n%s" % (
            name, fp, want, canonical)
        buf = io.BytesIO(raw[10:])
        datum = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(buf))
        assert buf.tell() == len(raw) - 10, "%s: %d bytes left over" % (name, len(raw) - 10 - buf.tell())
        got = to_avro_json(schema, datum)
        exp = normalise_c_json(schema, expected)
        assert got == exp, "%s: value differs\n python: %s\n c:      %s" % (name, got, exp)
    print("interop: %d records written by the C codec decoded by Apache Avro for Python %s" % (
        len(names), getattr(avro, "__version__", "?")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
