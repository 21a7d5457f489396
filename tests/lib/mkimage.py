#!/usr/bin/env python3
"""Builds test OCI images without Docker (python3 stdlib + the zstd CLI).

  mkimage.py layer OUT.tar [--file PATH=TEXT]... [--add PATH=HOSTFILE]... [--dir PATH]...
                   [--symlink PATH=TARGET]...
      a layer tar from a tiny spec (files are 0644, dirs 0755, owned by root)

  mkimage.py build OUT_DIR --tag TAG --layer TAR[:none|gzip|zstd]... [--platform os/arch[/v]]
                   [--env K=V]... [--entrypoint JSON] [--cmd JSON] [--workdir DIR]
                   [--user U] [--expose 80/tcp]... [--docker]
      an OCI image layout holding one image (Docker schema2 media types with --docker)

  mkimage.py merge OUT_DIR --tag TAG SRC_DIR...
      an OCI layout whose index.json names one image index made of the
      images of the SRC layouts (platform taken from each image's config)

  mkimage.py push DIR TAG REGISTRY/NAME:REF [--user U --password P] [--skopeo]
      uploads the image (and index) named TAG in layout DIR to a registry
      with the distribution API (monolithic blob uploads, manifest PUTs);
      --skopeo uses `skopeo copy --all --preserve-digests` instead

  mkimage.py digest DIR TAG
      prints the manifest (or index) digest that TAG names in layout DIR
"""
import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = {
    "none": "application/vnd.docker.image.rootfs.diff.tar",
    "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class Layout:
    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def blob_path(self, digest):
        return os.path.join(self.path, "blobs", "sha256", digest.split(":", 1)[1])

    def put(self, data):
        d = sha256(data)
        with open(self.blob_path(d), "wb") as f:
            f.write(data)
        return d

    def get(self, digest):
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def index(self):
        p = os.path.join(self.path, "index.json")
        if not os.path.exists(p):
            return {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
        with open(p) as f:
            return json.load(f)

    def set_tag(self, tag, desc):
        idx = self.index()
        idx["manifests"] = [m for m in idx["manifests"]
                            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        desc = dict(desc)
        desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
        idx["manifests"].append(desc)
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump(idx, f)

    def lookup(self, tag):
        for m in self.index()["manifests"]:
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
                return m
        sys.exit(f"mkimage: no tag {tag} in {self.path}")


def compress(data, how):
    if how == "none":
        return data
    if how == "gzip":
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
            g.write(data)
        return buf.getvalue()
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, check=True,
                              stdout=subprocess.PIPE).stdout
    sys.exit(f"mkimage: unknown compression {how}")


def cmd_layer(a):
    with tarfile.open(a.out, "w", format=tarfile.PAX_FORMAT) as t:
        def add(name, typ, data=b"", target=""):
            ti = tarfile.TarInfo(name.lstrip("/"))
            ti.type = typ
            ti.mtime = 1700000000
            ti.mode = 0o755 if typ == tarfile.DIRTYPE else 0o644
            if typ == tarfile.SYMTYPE:
                ti.linkname = target
            ti.size = len(data) if typ == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
        for d in a.dir or []:
            add(d, tarfile.DIRTYPE)
        for spec in a.file or []:
            path, text = spec.split("=", 1)
            add(path, tarfile.REGTYPE, text.encode())
        for spec in a.add or []:
            path, src = spec.split("=", 1)
            with open(src, "rb") as f:
                add(path, tarfile.REGTYPE, f.read())
        for spec in a.symlink or []:
            path, target = spec.split("=", 1)
            add(path, tarfile.SYMTYPE, target=target)


def parse_platform(s):
    parts = s.split("/")
    p = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        p["variant"] = parts[2]
    return p


def cmd_build(a):
    lay = Layout(a.out)
    plat = parse_platform(a.platform)
    layers, diff_ids = [], []
    for spec in a.layer:
        path, _, how = spec.partition(":")
        how = how or "gzip"
        with open(path, "rb") as f:
            raw = f.read()
        if a.docker and how not in MT_DOCKER_LAYER:
            sys.exit(f"mkimage: {how} layers have no Docker media type")
        blob = compress(raw, how)
        diff_ids.append(sha256(raw))
        layers.append({"mediaType": (MT_DOCKER_LAYER if a.docker else MT_OCI_LAYER)[how],
                       "digest": lay.put(blob), "size": len(blob)})
    cfg = {}
    if a.env:
        cfg["Env"] = a.env
    if a.entrypoint:
        cfg["Entrypoint"] = json.loads(a.entrypoint)
    if a.cmd:
        cfg["Cmd"] = json.loads(a.cmd)
    if a.workdir:
        cfg["WorkingDir"] = a.workdir
    if a.user:
        cfg["User"] = a.user
    if a.expose:
        cfg["ExposedPorts"] = {p: {} for p in a.expose}
    config = dict(plat)
    config.update({"created": "2024-01-01T00:00:00Z", "config": cfg,
                   "rootfs": {"type": "layers", "diff_ids": diff_ids},
                   "history": [{"created_by": "mkimage.py"} for _ in layers]})
    cblob = compact(config)
    manifest = {"schemaVersion": 2,
                "mediaType": MT_DOCKER_MANIFEST if a.docker else MT_OCI_MANIFEST,
                "config": {"mediaType": MT_DOCKER_CONFIG if a.docker else MT_OCI_CONFIG,
                           "digest": lay.put(cblob), "size": len(cblob)},
                "layers": layers}
    mblob = compact(manifest)
    desc = {"mediaType": manifest["mediaType"], "digest": lay.put(mblob), "size": len(mblob)}
    lay.set_tag(a.tag, desc)
    print(desc["digest"])


def copy_tree(src, dst, digest):
    """Copies a manifest or index and everything it references."""
    data = src.get(digest)
    dst.put(data)
    doc = json.loads(data)
    if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
        for m in doc["manifests"]:
            copy_tree(src, dst, m["digest"])
        return doc
    for d in [doc["config"]] + doc["layers"]:
        dst.put(src.get(d["digest"]))
    return doc


def cmd_merge(a):
    out = Layout(a.out)
    entries = []
    docker = False
    for s in a.src:
        src = Layout(s)
        desc = src.index()["manifests"][0]
        doc = copy_tree(src, out, desc["digest"])
        docker = docker or doc.get("mediaType") == MT_DOCKER_MANIFEST
        cfg = json.loads(src.get(doc["config"]["digest"]))
        plat = {"os": cfg["os"], "architecture": cfg["architecture"]}
        if cfg.get("variant"):
            plat["variant"] = cfg["variant"]
        entries.append({"mediaType": desc["mediaType"], "digest": desc["digest"],
                        "size": desc["size"], "platform": plat})
    index = {"schemaVersion": 2, "mediaType": MT_DOCKER_LIST if docker else MT_OCI_INDEX,
             "manifests": entries}
    iblob = compact(index)
    desc = {"mediaType": index["mediaType"], "digest": out.put(iblob), "size": len(iblob)}
    out.set_tag(a.tag, desc)
    print(desc["digest"])


class Registry:
    def __init__(self, host, name, user=None, password=None):
        self.base = f"http://{host}/v2/{name}"
        self.auth = None
        if user is not None:
            self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def request(self, method, url, data=None, headers=None):
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if self.auth:
            req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def put_blob(self, data):
        d = sha256(data)
        st, _, _ = self.request("HEAD", f"{self.base}/blobs/{d}")
        if st == 200:
            return
        st, hdrs, body = self.request("POST", f"{self.base}/blobs/uploads/", b"")
        if st != 202:
            sys.exit(f"mkimage: upload start: HTTP {st} {body[:200]!r}")
        loc = urllib.parse.urljoin(self.base, hdrs["Location"])
        sep = "&" if "?" in loc else "?"
        st, _, body = self.request("PUT", f"{loc}{sep}digest={d}", data,
                                   {"Content-Type": "application/octet-stream"})
        if st != 201:
            sys.exit(f"mkimage: blob {d}: HTTP {st} {body[:200]!r}")

    def put_manifest(self, ref, data, media_type):
        st, _, body = self.request("PUT", f"{self.base}/manifests/{ref}", data,
                                   {"Content-Type": media_type})
        if st != 201:
            sys.exit(f"mkimage: manifest {ref}: HTTP {st} {body[:300]!r}")


def push_tree(reg, lay, digest, media_type, ref):
    data = lay.get(digest)
    doc = json.loads(data)
    if media_type in INDEX_TYPES:
        for m in doc["manifests"]:
            push_tree(reg, lay, m["digest"], m["mediaType"], m["digest"])
    else:
        for d in [doc["config"]] + doc["layers"]:
            reg.put_blob(lay.get(d["digest"]))
    reg.put_manifest(ref, data, media_type)


def cmd_push(a):
    lay = Layout(a.dir)
    desc = lay.lookup(a.tag)
    host, _, rest = a.dest.partition("/")
    name, _, ref = rest.rpartition(":") if "@" not in rest else rest.partition("@")
    if a.skopeo:
        cmd = ["skopeo", "copy", "-q", "--all", "--preserve-digests", "--dest-tls-verify=false"]
        if a.user is not None:
            cmd += ["--dest-creds", f"{a.user}:{a.password}"]
        subprocess.run(cmd + [f"oci:{a.dir}:{a.tag}", f"docker://{a.dest}"], check=True)
    else:
        push_tree(Registry(host, name, a.user, a.password), lay, desc["digest"],
                  desc["mediaType"], ref)
    print(desc["digest"])


def cmd_digest(a):
    print(Layout(a.dir).lookup(a.tag)["digest"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("layer")
    p.add_argument("out")
    p.add_argument("--file", action="append")
    p.add_argument("--dir", action="append")
    p.add_argument("--symlink", action="append")
    p.add_argument("--add", action="append", help="PATH=HOSTFILE")
    p.set_defaults(fn=cmd_layer)
    p = sub.add_parser("build")
    p.add_argument("out")
    p.add_argument("--tag", required=True)
    p.add_argument("--layer", action="append", default=[])
    p.add_argument("--platform", default="linux/amd64")
    p.add_argument("--env", action="append")
    p.add_argument("--entrypoint")
    p.add_argument("--cmd")
    p.add_argument("--workdir")
    p.add_argument("--user")
    p.add_argument("--expose", action="append")
    p.add_argument("--docker", action="store_true")
    p.set_defaults(fn=cmd_build)
    p = sub.add_parser("merge")
    p.add_argument("out")
    p.add_argument("--tag", required=True)
    p.add_argument("src", nargs="+")
    p.set_defaults(fn=cmd_merge)
    p = sub.add_parser("push")
    p.add_argument("dir")
    p.add_argument("tag")
    p.add_argument("dest")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--skopeo", action="store_true")
    p.set_defaults(fn=cmd_push)
    p = sub.add_parser("digest")
    p.add_argument("dir")
    p.add_argument("tag")
    p.set_defaults(fn=cmd_digest)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
