#!/usr/bin/env python3
"""The built-in sample app: a static busybox httpd image, made from this
machine's busybox-static, as an OCI layout with the tag "sample".

  sample-image.py OUT_DIR [--port 8080] [--compression gzip|zstd|none]

Layers: 1) busybox and its applet links, /etc/passwd, /etc/group;
2) the site (/www, with CGIs that report the runtime identity, and 16
random bytes with the clock);
3) a whiteout of a file from layer 2 (so flattening is exercised).
Config: runs as user "www" in /www, env GREETING=hello, exposes the port.
"""
import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile

APPLETS = ["sh", "httpd", "ls", "cat", "id", "env", "pwd", "sleep", "echo", "wget",
           "head", "od", "tr", "date"]
PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww:x:1000:1000:www:/www:/bin/sh\n"
GROUP = "root:x:0:\nwww:x:1000:\n"
INDEX = "<h1>hello from lttle</h1>\n"
CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "user=$(id -un) uid=$(id -u) gid=$(id -g)"
echo "pwd=$(pwd)"
echo "greeting=$GREETING"
"""
# Per-instance uniqueness after a snapshot restore: 16 random bytes and
# the guest's clock (tests/integration/76-qemu-unique.sh).
RAND_CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "rand=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n')"
echo "time=$(date +%s)"
"""


def add(tar, name, typ=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, link=""):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.mtime = 1700000000
    ti.linkname = link
    ti.size = len(data) if typ == tarfile.REGTYPE else 0
    tar.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)


def layer(path, entries):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            add(tar, **e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--compression", default="gzip")
    a = ap.parse_args()
    busybox = open("/bin/busybox", "rb").read()
    tmp = tempfile.mkdtemp()
    base = [dict(name="bin", typ=tarfile.DIRTYPE, mode=0o755),
            dict(name="bin/busybox", data=busybox, mode=0o755),
            dict(name="etc", typ=tarfile.DIRTYPE, mode=0o755),
            dict(name="etc/passwd", data=PASSWD.encode()),
            dict(name="etc/group", data=GROUP.encode()),
            dict(name="tmp", typ=tarfile.DIRTYPE, mode=0o1777)]
    base += [dict(name="bin/" + x, typ=tarfile.SYMTYPE, link="busybox") for x in APPLETS]
    site = [dict(name="www", typ=tarfile.DIRTYPE, mode=0o755, uid=1000, gid=1000),
            dict(name="www/index.html", data=INDEX.encode(), uid=1000, gid=1000),
            dict(name="www/old.html", data=b"removed by the next layer\n"),
            dict(name="www/cgi-bin", typ=tarfile.DIRTYPE, mode=0o755),
            dict(name="www/cgi-bin/whoami", data=CGI.encode(), mode=0o755),
            dict(name="www/cgi-bin/rand", data=RAND_CGI.encode(), mode=0o755)]
    wh = [dict(name="www/.wh.old.html")]
    paths = []
    for i, entries in enumerate([base, site, wh]):
        p = os.path.join(tmp, "layer%d.tar" % i)
        layer(p, entries)
        paths.append(p)
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = [sys.executable, os.path.join(here, "mkimage.py"), "build", a.out, "--tag", "sample"]
    for p in paths:
        cmd += ["--layer", "%s:%s" % (p, a.compression)]
    cmd += ["--env", "PATH=/bin", "--env", "GREETING=hello",
            "--entrypoint", '["/bin/httpd", "-f", "-p", "%d", "-h", "/www"]' % a.port,
            "--workdir", "/www", "--user", "www", "--expose", "%d/tcp" % a.port]
    subprocess.run(cmd, check=True)
    for p in paths:
        os.unlink(p)
    os.rmdir(tmp)
    print(a.out)


if __name__ == "__main__":
    main()
