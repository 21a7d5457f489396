#!/usr/bin/env python3
"""Builds the image-pipeline benchmark image: an OCI layout of real files
from this machine, in four gzip layers (python3 stdlib + GNU tar + gzip).

    mkbench.py OUT_DIR [--scale small|full]

Layers (paths that do not exist here are skipped):
  1 base      /etc, /usr/sbin, python3.11, perl, i18n, zoneinfo
  2 toolchain /usr/lib/gcc
  3 docs      /usr/share/doc, /usr/share/man
  4 app       /usr/lib/git-core plus changes to the lower layers: files
              overwritten in /etc, a whiteout of a docs subtree, an opaque
              /usr/share/i18n/locales holding two new files
--scale small keeps only a sample (for a quick run). The layout's tag is
"bench". Prints the layout's manifest digest.
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

LAYERS = {
    "full": [
        ["etc", "usr/sbin", "usr/lib/python3.11", "usr/share/perl", "usr/share/i18n",
         "usr/share/zoneinfo"],
        ["usr/lib/gcc"],
        ["usr/share/doc", "usr/share/man"],
        ["usr/lib/git-core"],
    ],
    "small": [
        ["etc", "usr/sbin", "usr/share/i18n"],
        ["usr/lib/python3.11/email"],
        ["usr/share/doc/tar", "usr/share/man/man1"],
        ["usr/lib/git-core"],
    ],
}
TAR = ["tar", "--numeric-owner", "--format=pax", "--pax-option=delete=atime,delete=ctime",
       "--xattrs", "--xattrs-include=*", "--sort=name", "--ignore-failed-read",
       "--warning=no-file-changed", "--warning=no-failed-read", "--warning=no-file-ignored"]


def existing(paths):
    return [p for p in paths if os.path.lexists("/" + p)]


def app_changes(stage, scale):
    """Files of the top layer that change lower layers."""
    os.makedirs(os.path.join(stage, "etc"), exist_ok=True)
    for name in ("hostname", "os-release", "motd"):
        with open(os.path.join(stage, "etc", name), "w") as f:
            f.write("changed by the app layer: %s\n" % name)
    docs = sorted(os.listdir("/usr/share/doc")) if os.path.isdir("/usr/share/doc") else []
    if scale == "full":
        # Hide a few packages' docs.
        os.makedirs(os.path.join(stage, "usr/share/doc"), exist_ok=True)
        for d in docs[:20]:
            open(os.path.join(stage, "usr/share/doc", ".wh." + d), "w").close()
    loc = os.path.join(stage, "usr/share/i18n/locales")
    os.makedirs(loc, exist_ok=True)
    open(os.path.join(loc, ".wh..wh..opq"), "w").close()
    for name in ("C", "en_US"):
        with open(os.path.join(loc, name), "w") as f:
            f.write("LC_CTYPE\nEND LC_CTYPE\n")


def make_layer(paths, stage, out_tar):
    cmd = TAR + ["-C", "/", "-cf", out_tar] + existing(paths)
    if stage:
        cmd += ["-C", stage, "."]
    r = subprocess.run(cmd)
    if r.returncode not in (0, 1):  # 1: files changed while reading
        raise SystemExit("tar failed")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def put_blob(layout, path=None, data=None):
    if data is not None:
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(layout, "blobs/sha256", d), "wb") as f:
            f.write(data)
        return d, len(data)
    d = sha256_file(path)
    dst = os.path.join(layout, "blobs/sha256", d)
    shutil.move(path, dst)
    return d, os.path.getsize(dst)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--scale", default="full", choices=sorted(LAYERS))
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)
    os.makedirs(os.path.join(a.out, "blobs/sha256"), exist_ok=True)
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    work = tempfile.mkdtemp(dir=a.out)
    layers, diff_ids = [], []
    for i, paths in enumerate(LAYERS[a.scale]):
        stage = None
        if i == len(LAYERS[a.scale]) - 1:
            stage = os.path.join(work, "stage")
            app_changes(stage, a.scale)
        tar = os.path.join(work, "layer%d.tar" % i)
        make_layer(paths, stage, tar)
        diff_ids.append("sha256:" + sha256_file(tar))
        subprocess.run(["gzip", "-6", "-n", tar], check=True)
        d, size = put_blob(a.out, tar + ".gz")
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": "sha256:" + d, "size": size})
        print("layer %d: %s (%d bytes)" % (i + 1, d[:12], size), file=sys.stderr)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "mkbench.py"} for _ in layers],
    }
    cd, cs = put_blob(a.out, data=json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": "sha256:" + cd, "size": cs},
                "layers": layers}
    md, ms = put_blob(a.out, data=json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + md,
         "size": ms, "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f)
    shutil.rmtree(work)
    print("sha256:" + md)


if __name__ == "__main__":
    main()
