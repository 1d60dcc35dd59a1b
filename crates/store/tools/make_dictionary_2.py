#!/usr/bin/env python3
"""Makes crates/store/src/dictionary-2.zstd: dictionary-1.txt's content, unchanged, with
zstd's entropy tables (ZDICT_finalizeDictionary) computed from the stored values of a
database written by `agentsigna bench` (its synthetic organization: no value of any
deployment's). With them, zstd starts each small frame from ready tables instead of
building its own: about 2.8x less CPU per value and 16 % fewer bytes (BENCHMARKS.md).

The dictionary is part of the storage format: once released it never changes (a test
pins its SHA-256); a better one gets a new tag. This script documents how it was made.

    pip install zstandard
    agentsigna bench --data-dir /tmp/bd --duration-secs 6
    python3 crates/store/tools/make_dictionary_2.py /tmp/bd/agentsigna.db [OUT]

The database may hold values of either dictionary (tags 0x01 / 0x02, token tags 2 / 3).
Another run's values give other tables, so other bytes: the committed file is the one
that counts (OUT defaults to it; give another path to try a new run's).

Needs libzstd >= 1.4.5 (Debian's libzstd1) for ZDICT_finalizeDictionary.
"""
import ctypes
import os
import sqlite3
import struct
import sys

import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = open(os.path.join(HERE, "..", "src", "dictionary-1.txt"), "rb").read()
OUT = os.path.join(HERE, "..", "src", "dictionary-2.zstd")
# packed.rs's tags of entry data, layout.rs's of passport tokens, by dictionary.
DATA_TAGS = {b"\x01": 1, b"\x02": 2}
TOKEN_TAGS = {b"\x02": 1, b"\x03": 2}
MAGIC = b"\x28\xb5\x2f\xfd"
SAMPLES = 4000


class Params(ctypes.Structure):
    _fields_ = [("compressionLevel", ctypes.c_int), ("notificationLevel", ctypes.c_uint), ("dictID", ctypes.c_uint)]


def samples(db):
    """Entry data texts and token header || payload bytes, as the store compresses them."""
    decoders = {
        1: zstandard.ZstdDecompressor(
            dict_data=zstandard.ZstdCompressionDict(RAW, dict_type=zstandard.DICT_TYPE_RAWCONTENT)),
    }
    if os.path.exists(OUT):
        two = open(OUT, "rb").read()
        decoders[2] = zstandard.ZstdDecompressor(
            dict_data=zstandard.ZstdCompressionDict(two, dict_type=zstandard.DICT_TYPE_FULLDICT))
    unpack = lambda dictionary, frame: decoders[dictionary].decompress(MAGIC + frame, max_output_size=1 << 20)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out = []
    for (data,) in conn.execute("SELECT data FROM ledger ORDER BY idx LIMIT ?", (SAMPLES * 3 // 4,)):
        data = data.encode() if isinstance(data, str) else data
        tag = DATA_TAGS.get(data[:1])
        out.append(unpack(tag, data[1:]) if tag else data)  # untagged: the canonical text
    for (token,) in conn.execute("SELECT token FROM passports ORDER BY case_num LIMIT ?", (SAMPLES // 4,)):
        tag = TOKEN_TAGS.get(token[:1])
        if tag:  # tag, len(header) u16, len(signature) u16, signature, frame(header || payload)
            (s,) = struct.unpack(">H", token[3:5])
            out.append(unpack(tag, token[5 + s:]))
    return out


def main():
    texts = samples(sys.argv[1])
    out_path = sys.argv[2] if len(sys.argv) > 2 else OUT
    lib = ctypes.CDLL("libzstd.so.1")
    lib.ZDICT_finalizeDictionary.restype = ctypes.c_size_t
    lib.ZDICT_isError.restype = ctypes.c_uint
    buf = ctypes.create_string_buffer(len(RAW) + 8192)
    joined = b"".join(texts)
    sizes = (ctypes.c_size_t * len(texts))(*map(len, texts))
    n = lib.ZDICT_finalizeDictionary(
        buf, ctypes.c_size_t(len(buf)), RAW, ctypes.c_size_t(len(RAW)), joined, sizes, ctypes.c_uint(len(texts)),
        Params(3, 0, 2))
    if lib.ZDICT_isError(ctypes.c_size_t(n)):
        sys.exit("ZDICT_finalizeDictionary failed")
    open(out_path, "wb").write(buf.raw[:n])
    print(f"{out_path}: {n} bytes from {len(texts)} samples")


if __name__ == "__main__":
    main()
