#!/usr/bin/env python3
"""Writes an OCI layer tar from a compact spec (python3 stdlib + zstd CLI).

    mklayer.py SPEC OUT        SPEC: a JSON or python-literal file, or '-'

Spec: {"compression": "none"|"gzip"|"zstd", "entries": [ENTRY, ...]}
(a bare list means an uncompressed layer). Each ENTRY is a dict:

    {"path": "etc/passwd", "type": "file", "content": "text",
     "mode": 0o644, "uid": 0, "gid": 0, "mtime": 1700000000}
    type "file"      content (str), content_hex, or size + fill (a str
                     repeated) or size + seed (pseudo-random bytes)
    type "dir"       a directory
    type "symlink"   target
    type "hardlink"  target (a path in the archive)
    type "char" / "block"   major, minor
    type "fifo"
    type "whiteout"  path names the deleted entry; writes .wh.<name>
    type "opaque"    path names the directory; writes <dir>/.wh..wh..opq
    type "sparse"    size, data: [[offset, "text"], ...] (GNU sparse 1.0)
    type "raw"       name (str, written verbatim, e.g. "../x" or "/abs"),
                     plus the fields of another type in "as"
    xattrs           {"name": "text" | "hex:..."} as pax SCHILY.xattr.*
                     (or LIBARCHIVE.xattr.* with "xattr_style": "libarchive")
    pax              extra pax records {"key": "value"}

Paths are written as given (use "./etc" to mimic docker).
"""
import ast
import base64
import gzip
import io
import json
import random
import subprocess
import sys
import tarfile
import urllib.parse

TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def load_spec(path):
    text = sys.stdin.read() if path == "-" else open(path).read()
    try:
        spec = json.loads(text)
    except json.JSONDecodeError:
        spec = ast.literal_eval(text)
    if isinstance(spec, list):
        spec = {"entries": spec}
    return spec


def value_bytes(v):
    if isinstance(v, str) and v.startswith("hex:"):
        return bytes.fromhex(v[4:])
    return v.encode() if isinstance(v, str) else bytes(v)


def content_of(e):
    if "content_hex" in e:
        return bytes.fromhex(e["content_hex"])
    if "content" in e:
        return e["content"].encode()
    size = int(e.get("size", 0))
    if "seed" in e:
        return random.Random(e["seed"]).randbytes(size)
    fill = e.get("fill", "x").encode()
    return (fill * (size // max(len(fill), 1) + 1))[:size]


def base_info(name, e, default_mode):
    ti = tarfile.TarInfo(name)
    ti.mode = int(e.get("mode", default_mode))
    ti.uid = int(e.get("uid", 0))
    ti.gid = int(e.get("gid", 0))
    ti.mtime = int(e.get("mtime", 1700000000))
    ti.uname = e.get("uname", "")
    ti.gname = e.get("gname", "")
    pax = {}
    style = e.get("xattr_style", "schily")
    for k, v in e.get("xattrs", {}).items():
        b = value_bytes(v)
        if style == "libarchive":
            key = "LIBARCHIVE.xattr." + urllib.parse.quote(k, safe="")
            pax[key] = base64.b64encode(b).decode().rstrip("=")
        else:
            pax["SCHILY.xattr." + k] = b.decode("utf-8", "surrogateescape")
    pax.update(e.get("pax", {}))
    ti.pax_headers = pax
    return ti


def add_sparse(tf, name, e):
    size = int(e["size"])
    chunks = [(int(off), value_bytes(text)) for off, text in e["data"]]
    regions = [(off, len(b)) for off, b in chunks]
    if not regions or regions[-1][0] + regions[-1][1] < size:
        regions.append((size, 0))
    amap = "%d\n" % len(regions) + "".join("%d\n%d\n" % r for r in regions)
    amap = amap.encode()
    amap += b"\0" * (-len(amap) % 512)
    body = amap + b"".join(b for _, b in chunks)
    parent, _, base = name.rpartition("/")
    ti = base_info((parent + "/" if parent else "") + "GNUSparseFile.0/" + base, e, 0o644)
    ti.pax_headers.update({
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(size),
    })
    ti.size = len(body)
    tf.addfile(ti, io.BytesIO(body))


def add_entry(tf, e):
    kind = e.get("type", "file")
    name = e.get("path", "")
    if kind == "raw":
        name = e["name"]
        kind = e.get("as", "file")
    if kind == "whiteout":
        parent, _, base = name.rstrip("/").rpartition("/")
        name = (parent + "/" if parent else "") + ".wh." + base
        kind = "file"
    elif kind == "opaque":
        name = name.rstrip("/") + "/.wh..wh..opq"
        kind = "file"
    if kind == "sparse":
        return add_sparse(tf, name, e)
    ti = base_info(name, e, 0o755 if kind == "dir" else 0o644)
    ti.type = TYPES[kind]
    data = None
    if kind == "file":
        data = content_of(e)
        ti.size = len(data)
    elif kind in ("symlink", "hardlink"):
        ti.linkname = e["target"]
        ti.mode = int(e.get("mode", 0o777 if kind == "symlink" else 0o644))
    elif kind in ("char", "block"):
        ti.devmajor = int(e.get("major", 0))
        ti.devminor = int(e.get("minor", 0))
    tf.addfile(ti, io.BytesIO(data) if data is not None else None)


def build(spec):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in spec["entries"]:
            add_entry(tf, e)
    raw = buf.getvalue()
    comp = spec.get("compression", "none")
    if comp == "gzip":
        return gzip.compress(raw, mtime=0)
    if comp == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=raw, stdout=subprocess.PIPE,
                              check=True).stdout
    if comp != "none":
        raise SystemExit("unknown compression " + comp)
    return raw


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    data = build(load_spec(sys.argv[1]))
    with open(sys.argv[2], "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
