"""A small Hugging Face Hub on 127.0.0.1: the parts of the API that ``huggingface_hub`` and
``datasets`` use to create a dataset repo, upload (LFS and regular files), commit, tag, list and
download. State lives in memory. Use with ``HF_ENDPOINT`` pointing here and ``HF_HUB_DISABLE_XET=1``.

``hub.fail_commits_after = n`` accepts n more commits and then answers 500 to every commit until
reset, to test interrupted uploads; ``hub.lfs_uploads`` counts object uploads.
``hub.cut_downloads = {path: n}`` sends only the first n bytes of the next full GET of that file
and drops the connection (an interrupted download); ``hub.range_requests`` lists (path, Range)
of the ranged GETs that followed; ``hub.fail_ranged = n`` answers 500 to the next n ranged GETs (a
client's in-call retry fails too, so the run stops with a partial file).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackServer

_API = re.compile(
    r"^/api/datasets/([^/]+/[^/]+?)(?:/(revision|refs|tree|paths-info|preupload|commit|tag|commits)(?:/(.*))?)?$"
)
_RESOLVE = re.compile(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_LFS_BATCH = re.compile(r"^/datasets/([^/]+/[^/]+?)\.git/info/lfs/objects/batch$")


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Repo:
    def __init__(self, repo_id: str, private: bool):
        self.id = repo_id
        self.private = private
        root = {
            "oid": hashlib.sha1(repo_id.encode()).hexdigest(),
            "parent": None,
            "files": {},
            "title": "initial commit",
        }
        self.commits = {root["oid"]: root}
        self.branches = {"main": root["oid"]}
        self.tags: dict[str, str] = {}

    def resolve(self, rev: str) -> dict | None:
        rev = urllib.parse.unquote(rev)
        oid = self.branches.get(rev) or self.tags.get(rev) or (rev if rev in self.commits else None)
        return self.commits.get(oid) if oid else None


class FakeHub(LoopbackServer):
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.lfs_uploads = 0
        self.commit_count = 0
        self.fail_commits_after: int | None = None
        self.cut_downloads: dict[str, int] = {}
        self.range_requests: list[tuple[str, str]] = []
        self.fail_ranged = 0
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def body(self) -> bytes:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                return gzip.decompress(data) if self.headers.get("Content-Encoding") == "gzip" else data

            def reply(
                self, status: int, payload=None, headers: dict | None = None, raw: bytes | None = None
            ) -> None:
                data = (
                    raw if raw is not None else (json.dumps(payload).encode() if payload is not None else b"")
                )
                self.send_response(status)
                self.send_header(
                    "Content-Type", "application/json" if raw is None else "application/octet-stream"
                )
                for key, value in (headers or {}).items():
                    self.send_header(key, str(value))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def error(self, status: int, code: str, message: str) -> None:
                self.reply(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                with hub.lock:
                    hub.get(self)

            def do_POST(self) -> None:
                with hub.lock:
                    hub.post(self)

            def do_PUT(self) -> None:
                data = self.body()
                with hub.lock:
                    oid = self.path.rsplit("/", 1)[-1]
                    if hashlib.sha256(data).hexdigest() != oid:
                        return self.error(400, "BadRequest", "sha256 does not match")
                    hub.lfs[oid] = data
                    hub.lfs_uploads += 1
                    self.reply(200, {})

        self._listen(Handler)

    # -----------------------------------------------------------------------------------------

    def _entry(self, path: str, meta: dict, commit: dict, expand: bool) -> dict:
        entry = {"type": "file", "oid": meta["git_oid"], "size": meta["size"], "path": path}
        if meta["lfs"]:
            entry["lfs"] = {"oid": meta["sha256"], "size": meta["size"], "pointerSize": 134}
        if expand:
            entry["lastCommit"] = {
                "id": commit["oid"],
                "title": commit["title"],
                "date": "2026-11-26T00:00:00.000Z",
            }
        return entry

    def _listing(self, commit: dict, prefix: str, recursive: bool, expand: bool) -> list[dict] | None:
        prefix = prefix.strip("/")
        entries, dirs = [], set()
        for path, meta in sorted(commit["files"].items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :] if prefix else path
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(([prefix] if prefix else []) + parts[:depth])
                if recursive or depth == 1:
                    dirs.add(directory)
            if recursive or len(parts) == 1:
                entries.append(self._entry(path, meta, commit, expand))
        if prefix and not entries and not dirs:
            return None
        return [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
            for d in sorted(dirs)
        ] + entries

    def _info(self, repo: Repo, commit: dict) -> dict:
        return {
            "id": repo.id, "_id": repo.id, "author": repo.id.split("/")[0], "sha": commit["oid"], "private": repo.private,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [], "lastModified": "2026-11-26T00:00:00.000Z",
            "createdAt": "2026-11-26T00:00:00.000Z", "siblings": [{"rfilename": p} for p in sorted(commit["files"])],
        }  # fmt: skip

    def get(self, h) -> None:
        parsed = urllib.parse.urlparse(h.path)
        query = urllib.parse.parse_qs(parsed.query)
        path = parsed.path
        resolve = _RESOLVE.match(path)
        if resolve:
            repo = self.repos.get(resolve.group(1))
            if repo is None:
                return h.error(404, "RepoNotFound", "repository not found")
            commit = repo.resolve(resolve.group(2))
            if commit is None:
                return h.error(404, "RevisionNotFound", "revision not found")
            file_path = urllib.parse.unquote(resolve.group(3))
            meta = commit["files"].get(file_path)
            if meta is None:
                return h.error(404, "EntryNotFound", f"{file_path} not found")
            data = self.lfs[meta["sha256"]] if meta["lfs"] else meta["data"]
            etag = meta["sha256"] if meta["lfs"] else meta["git_oid"]
            headers = {"X-Repo-Commit": commit["oid"], "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
            if meta["lfs"]:
                headers |= {"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": len(data)}
            status = 200
            ranges = h.headers.get("Range")
            if h.command == "GET" and not ranges and file_path in self.cut_downloads:
                cut = self.cut_downloads.pop(file_path)
                h.send_response(200)
                for key, value in {**headers, "Content-Length": len(data)}.items():
                    h.send_header(key, str(value))
                h.end_headers()
                h.wfile.write(data[:cut])
                h.wfile.flush()
                time.sleep(0.3)  # the client reads these bytes before it sees the connection drop
                h.close_connection = True
                return None
            if h.command == "GET" and ranges:
                self.range_requests.append((file_path, ranges))
                if self.fail_ranged > 0:
                    self.fail_ranged -= 1
                    return h.error(500, "InternalError", "try again later")
            if ranges and ranges.startswith("bytes="):
                start, _, end = ranges[6:].partition("-")
                start = int(start or 0)
                end = min(int(end) if end else len(data) - 1, len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start : end + 1], 206
            return h.reply(status, headers=headers, raw=data)
        api = _API.match(path)
        if not api:
            return h.error(404, "EntryNotFound", f"no route {path}")
        repo = self.repos.get(api.group(1))
        if repo is None:
            return h.error(404, "RepoNotFound", "repository not found")
        kind, rest = api.group(2), api.group(3) or ""
        if kind is None or kind == "revision":
            commit = repo.resolve(rest or "main")
            if commit is None:
                return h.error(404, "RevisionNotFound", "revision not found")
            return h.reply(200, self._info(repo, commit))
        if kind == "refs":
            return h.reply(200, {
                "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in repo.branches.items()],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in repo.tags.items()],
                "converts": [],
            })  # fmt: skip
        if kind == "tree":
            rev, _, sub = rest.partition("/")
            commit = repo.resolve(rev)
            if commit is None:
                return h.error(404, "RevisionNotFound", "revision not found")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            expand = query.get("expand", ["false"])[0].lower() == "true"
            listing = self._listing(commit, urllib.parse.unquote(sub), recursive, expand)
            if listing is None:
                return h.error(404, "EntryNotFound", "path not found")
            return h.reply(200, listing)
        if kind == "commits":
            commit = repo.resolve(rest or "main")
            history = []
            while commit is not None:
                history.append({"id": commit["oid"], "title": commit["title"], "message": "", "authors": [],
                                "date": "2026-11-26T00:00:00.000Z"})  # fmt: skip
                commit = repo.commits.get(commit["parent"]) if commit["parent"] else None
            return h.reply(200, history)
        return h.error(405, "MethodNotAllowed", "not supported")

    def post(self, h) -> None:
        path = urllib.parse.urlparse(h.path).path
        data = h.body()
        if path == "/api/repos/create":
            body = json.loads(data)
            repo_id = (
                f"{body.get('organization') or 'user'}/{body['name']}"
                if "/" not in body["name"]
                else body["name"]
            )
            url = f"{self.url}/datasets/{repo_id}"
            if repo_id in self.repos:
                return h.reply(409, {"error": "You already created this dataset repo", "url": url})
            self.repos[repo_id] = Repo(repo_id, bool(body.get("private")))
            return h.reply(200, {"url": url, "name": repo_id, "id": repo_id})
        if path == "/api/validate-yaml":
            return h.reply(200, {"errors": [], "warnings": []})
        batch = _LFS_BATCH.match(path)
        if batch:
            body = json.loads(data)
            objects = []
            for obj in body.get("objects", []):
                item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
                if obj["oid"] not in self.lfs:
                    item["actions"] = {"upload": {"href": f"{self.url}/__lfs__/{obj['oid']}", "header": {}}}
                objects.append(item)
            return h.reply(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                           {"Content-Type": "application/vnd.git-lfs+json"})  # fmt: skip
        api = _API.match(path)
        if not api or api.group(1) not in self.repos:
            return h.error(404, "RepoNotFound", "repository not found")
        repo, kind, rest = self.repos[api.group(1)], api.group(2), api.group(3) or ""
        if kind == "preupload":
            files = json.loads(data)["files"]
            modes = []
            for f in files:
                lfs = f["path"].endswith((".parquet", ".png", ".mp4", ".bin")) or f["size"] > 10_000_000
                modes.append(
                    {"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
                )
            return h.reply(
                200, {"files": modes, "commitOid": repo.resolve(urllib.parse.unquote(rest) or "main")["oid"]}
            )
        if kind == "paths-info":
            commit = repo.resolve(rest)
            if commit is None:
                return h.error(404, "RevisionNotFound", "revision not found")
            if h.headers.get("Content-Type", "").startswith("application/json"):
                body = json.loads(data)
                paths, expand = body.get("paths", []), bool(body.get("expand"))
            else:
                form = urllib.parse.parse_qs(data.decode())
                paths, expand = form.get("paths", []), form.get("expand", ["false"])[0].lower() == "true"
            out = []
            for p in paths:
                if p in commit["files"]:
                    out.append(self._entry(p, commit["files"][p], commit, expand))
                elif any(f.startswith(p.rstrip("/") + "/") for f in commit["files"]):
                    out.append(
                        {
                            "type": "directory",
                            "oid": hashlib.sha1(p.encode()).hexdigest(),
                            "size": 0,
                            "path": p,
                        }
                    )
            return h.reply(200, out)
        if kind == "commit":
            if self.fail_commits_after is not None:
                if self.fail_commits_after <= 0:
                    return h.error(500, "InternalError", "the hub is having a bad day")
                self.fail_commits_after -= 1
            branch = urllib.parse.unquote(rest) or "main"
            parent = repo.resolve(branch)
            files = dict(parent["files"])
            title = "commit"
            for line in data.decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    title = value.get("summary", title)
                elif key == "file":
                    content = base64.b64decode(value["content"])
                    files[value["path"]] = {
                        "size": len(content),
                        "lfs": False,
                        "data": content,
                        "git_oid": _git_oid(content),
                        "sha256": hashlib.sha256(content).hexdigest(),
                    }
                elif key == "lfsFile":
                    if value["oid"] not in self.lfs:
                        return h.error(422, "BadRequest", f"LFS object of {value['path']} was not uploaded")
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}\nsize {value['size']}\n".encode()
                    files[value["path"]] = {
                        "size": value["size"],
                        "lfs": True,
                        "sha256": value["oid"],
                        "git_oid": _git_oid(pointer),
                    }
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    for p in [p for p in files if p.startswith(value["path"].rstrip("/") + "/")]:
                        files.pop(p)
            oid = hashlib.sha1(f"{parent['oid']}{time.time_ns()}{len(repo.commits)}".encode()).hexdigest()
            repo.commits[oid] = {"oid": oid, "parent": parent["oid"], "files": files, "title": title}
            repo.branches[branch] = oid
            self.commit_count += 1
            return h.reply(200, {"commitUrl": f"{self.url}/datasets/{repo.id}/commit/{oid}", "commitOid": oid,
                                 "commitMessage": title, "success": True})  # fmt: skip
        if kind == "tag":
            body = json.loads(data or b"{}")
            commit = repo.resolve(rest)
            if commit is None:
                return h.error(404, "RevisionNotFound", "revision not found")
            if body["tag"] in repo.tags:
                return h.error(409, "Conflict", f"tag {body['tag']} already exists")
            repo.tags[body["tag"]] = commit["oid"]
            return h.reply(200, {})
        return h.error(405, "MethodNotAllowed", "not supported")
