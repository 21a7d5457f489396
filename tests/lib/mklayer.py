#!/usr/bin/env python3
"""Writes an OCI layer tar from a compact spec (python3 stdlib + zstd CLI),
and lists filesystem images in one canonical form to compare them.

    mklayer.py SPEC OUT        SPEC: a JSON or python-literal file, or '-'
    mklayer.py ls-tar TAR      canonical listing of a tar ('-': stdin)
    mklayer.py ls-sqfs IMG     ... of a squashfs image (via sqfs2tar)
    mklayer.py ls-ext4 IMG     ... of an ext4 image (via debugfs; no
                               /lost+found unless it has entries)

Listing: one line per path, sorted, "/" first:
    PATH TYPE MODE UID:GID MTIME [SIZE sha256:HEX16 | -> TARGET | MAJ,MIN]
         [nlink=N | link=PRIMARY] [x:NAME=HEX ...]
TYPE is d f l c b p s; hardlinked paths name the first (sorted) path of
their inode as PRIMARY.

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
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
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


# ---- canonical listings -------------------------------------------------

class Node:
    def __init__(self, path, kind, mode, uid, gid, mtime):
        self.path, self.kind, self.mode = path, kind, mode & 0o7777
        self.uid, self.gid, self.mtime = uid, gid, mtime
        self.size = None
        self.digest = None
        self.target = None
        self.dev = None
        self.xattrs = {}
        self.group = None  # hardlink identity


def hexdigest(data):
    return hashlib.sha256(data).hexdigest()[:16]


def render(nodes):
    groups = {}
    for n in nodes:
        if n.group is not None:
            groups.setdefault(n.group, []).append(n.path)
    out = []
    for n in sorted(nodes, key=lambda n: (n.path != "/", n.path)):
        f = [n.path, n.kind, "%04o" % n.mode, "%d:%d" % (n.uid, n.gid), str(n.mtime)]
        if n.kind == "f":
            f += [str(n.size), "sha256:" + n.digest]
        elif n.kind == "l":
            f += ["->", n.target]
        elif n.kind in "cb":
            f.append("%d,%d" % n.dev)
        members = sorted(groups.get(n.group, [])) if n.group is not None else []
        if len(members) > 1:
            f.append("nlink=%d" % len(members) if members[0] == n.path else "link=" + members[0])
        for k in sorted(n.xattrs):
            f.append("x:%s=%s" % (k, n.xattrs[k].hex()))
        out.append(" ".join(f))
    return "\n".join(out) + "\n"


TAR_KINDS = {tarfile.REGTYPE: "f", tarfile.AREGTYPE: "f", tarfile.DIRTYPE: "d",
             tarfile.SYMTYPE: "l", tarfile.CHRTYPE: "c", tarfile.BLKTYPE: "b",
             tarfile.FIFOTYPE: "p", tarfile.CONTTYPE: "f"}


def list_tar(fileobj, strip=""):
    nodes, by_path = [], {}
    with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
        for m in tf:
            name = m.name
            if strip and (name == strip or name.startswith(strip + "/")):
                name = name[len(strip):]
            path = "/" + "/".join(p for p in name.split("/") if p not in ("", "."))
            if m.type == tarfile.LNKTYPE:
                tname = m.linkname
                if strip and tname.startswith(strip + "/"):
                    tname = tname[len(strip):]
                prim = by_path["/" + "/".join(p for p in tname.split("/") if p not in ("", "."))]
                if prim.group is None:
                    prim.group = prim.path
                n = Node(path, prim.kind, prim.mode, prim.uid, prim.gid, prim.mtime)
                n.size, n.digest, n.xattrs, n.group = prim.size, prim.digest, prim.xattrs, prim.group
                n.target, n.dev = prim.target, prim.dev
                nodes.append(n)
                by_path[path] = n
                continue
            n = Node(path, TAR_KINDS.get(m.type, "?"), m.mode, m.uid, m.gid, int(m.mtime))
            if n.kind == "f":
                data = tf.extractfile(m).read()
                n.size, n.digest = len(data), hexdigest(data)
            elif n.kind == "l":
                n.target = m.linkname
            elif n.kind in "cb":
                n.dev = (m.devmajor, m.devminor)
            for k, v in m.pax_headers.items():
                if k.startswith("SCHILY.xattr."):
                    n.xattrs[k[13:]] = v.encode("utf-8", "surrogateescape")
            nodes.append(n)
            by_path[path] = n
    return nodes


def debugfs(img, cmds):
    """Runs debugfs commands; returns {command: output}."""
    r = subprocess.run(["debugfs", "-f", "-", img], input="\n".join(cmds) + "\n",
                       capture_output=True, text=True, errors="surrogateescape")
    res, cur = {}, None
    for line in r.stdout.splitlines():
        if line.startswith("debugfs: "):
            cur = line[9:]
            res[cur] = []
        elif cur is not None:
            res[cur].append(line)
    return res


def parse_ea(lines):
    xattrs = {}
    for line in lines:
        m = re.match(r"^\s*(\S+) \((\d+)\)(?: = (.*))?$", line)
        if not m:
            continue
        val = m.group(3) or ""
        if val.startswith('"'):
            b = val[1:val.rindex('"')].encode("utf-8", "surrogateescape")
        else:
            b = bytes.fromhex(val.replace(" ", ""))
        xattrs[m.group(1)] = b
    return xattrs


def list_ext4(img, keep_lpf=False):
    nodes = []
    inodes = {}
    todo = [("/", 2)]
    root = None
    while todo:
        res = debugfs(img, ["ls -p <%d>" % ino for _, ino in todo])
        nxt = []
        for dpath, dino in todo:
            for line in res.get("ls -p <%d>" % dino, []):
                parts = line.split("/")
                if len(parts) < 8:
                    continue
                ino, mode, name = int(parts[1]), int(parts[2], 8), "/".join(parts[5:-2])
                if ino == 0:
                    continue  # unused slot (empty directory blocks)
                if name in (".", ".."):
                    if name == "." and dpath == "/":
                        root = ino
                    continue
                path = (dpath.rstrip("/") + "/" + name)
                inodes.setdefault(ino, []).append(path)
                if (mode & 0o170000) == 0o040000:
                    nxt.append((path, ino))
        todo = nxt
    inodes[root or 2] = ["/"]
    cmds = []
    tmp = tempfile.mkdtemp()
    for ino in inodes:
        cmds += ["stat <%d>" % ino, "ea_list <%d>" % ino, "dump <%d> %s/%d" % (ino, tmp, ino)]
    res = debugfs(img, cmds)
    kinds = {"regular": "f", "directory": "d", "symlink": "l", "character special": "c",
             "block special": "b", "FIFO": "p", "socket": "s"}
    for ino, paths in inodes.items():
        st = "\n".join(res.get("stat <%d>" % ino, []))
        kind = kinds.get(re.search(r"Type: (.+?)\s+Mode:", st).group(1), "?")
        mode = int(re.search(r"Mode:\s+(\d+)", st).group(1), 8)
        uid = int(re.search(r"User:\s+(\d+)", st).group(1))
        gid = int(re.search(r"Group:\s+(\d+)", st).group(1))
        mtime = int(re.search(r"mtime: 0x([0-9a-f]+)", st).group(1), 16)
        size = int(re.search(r"Size: (\d+)", st).group(1))
        data = b""
        fname = "%s/%d" % (tmp, ino)
        if os.path.exists(fname):
            data = open(fname, "rb").read()
            os.unlink(fname)
        for path in paths:
            if path == "/lost+found" and not keep_lpf and kind == "d" and \
                    not any(p.startswith("/lost+found/") for ps in inodes.values() for p in ps):
                continue
            n = Node(path, kind, mode, uid, gid, mtime)
            if kind == "f":
                n.size, n.digest = size, hexdigest(data)
            elif kind == "l":
                m = re.search(r'Fast link dest: "(.*)"', st)
                n.target = m.group(1) if m else data[:size].decode("utf-8", "surrogateescape")
            elif kind in "cb":
                m = re.search(r"Device major/minor number: (\d+):(\d+)", st)
                n.dev = (int(m.group(1)), int(m.group(2)))
            n.xattrs = parse_ea(res.get("ea_list <%d>" % ino, []))
            if kind != "d" and len(paths) > 1:
                n.group = ino
            nodes.append(n)
    os.rmdir(tmp)
    return nodes


def list_sqfs(img):
    r = subprocess.run(["sqfs2tar", "-r", "R", img], capture_output=True, check=True)
    return list_tar(io.BytesIO(r.stdout), strip="R")


def main():
    if len(sys.argv) == 3 and sys.argv[1].startswith("ls-"):
        what, arg = sys.argv[1], sys.argv[2]
        if what == "ls-tar":
            f = sys.stdin.buffer if arg == "-" else open(arg, "rb")
            nodes = list_tar(f)
        elif what == "ls-sqfs":
            nodes = list_sqfs(arg)
        elif what == "ls-ext4":
            nodes = list_ext4(arg)
        else:
            raise SystemExit(__doc__)
        sys.stdout.write(render(nodes))
        return
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    data = build(load_spec(sys.argv[1]))
    with open(sys.argv[2], "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
