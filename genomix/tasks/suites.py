"""Benchmark suites (GUE, Nucleotide Transformer, GenomicBenchmarks): where they are published and how to
fetch them into task folders that :func:`genomix.tasks.load_task` reads.

The suites are listed in ``tasks/data/benchmarks.yaml``. Fetching is all-or-nothing per task: files go
to a staging folder beside the output, the task is read back with :func:`load_task` (a malformed or
truncated file fails there, with its line), and only then is the staging folder renamed to
``<out>/<task>``. A task folder that exists is complete and is skipped, so an interrupted run resumes
where it stopped; downloads themselves resume from their ``.part`` files
(:func:`genomix.genome.download.download`).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import yaml

from ..errors import ChecksumError, ConfigError, DownloadError, InputFormatError
from ..genome.download import USER_AGENT, download, fetch_text
from ..genome.registry import cache_dir
from .labelled import load_task

SUITES_FILE = Path(__file__).parent / "data" / "benchmarks.yaml"
SOURCE_FILE = "SOURCE.json"
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
DEFAULT_ZENODO_ENDPOINT = "https://zenodo.org"


@dataclasses.dataclass(frozen=True)
class BenchmarkSuite:
    """One suite: its tasks (``group/name`` paths), the files of each, and where they come from
    (``archive``: one zip; ``hub_dataset`` + ``revision``: a pinned Hugging Face dataset repository;
    ``zenodo_record`` + ``zip_name``: one zip per task in a Zenodo record)."""

    name: str
    description: str
    homepage: str
    tasks: tuple[str, ...]
    files: tuple[str, ...]
    archive: dict[str, str] | None = None
    hub_dataset: str | None = None
    revision: str | None = None
    zenodo_record: str | None = None
    zip_name: str | None = None

    def source(self) -> str:
        """Where the suite is fetched from, in one line."""
        if self.archive is not None:
            return self.archive["url"]
        if self.zenodo_record is not None:
            return f"{DEFAULT_ZENODO_ENDPOINT}/records/{self.zenodo_record} ({self.zip_name} per task)"
        return f"{self.hub_dataset}@{self.revision}"

    def select(self, wanted: list[str] | None) -> list[str]:
        """The tasks named in ``wanted`` (a task, or a group such as ``prom`` for all of ``prom/*``);
        every task when ``wanted`` is empty."""
        if not wanted:
            return list(self.tasks)
        chosen: list[str] = []
        for name in wanted:
            name = name.strip("/")
            matches = [t for t in self.tasks if t == name or t.startswith(name + "/")]
            if not matches:
                raise ConfigError(f"suite {self.name!r} has no task or group {name!r}; its tasks: "
                                  f"{', '.join(self.tasks)}")
            chosen.extend(t for t in matches if t not in chosen)
        return chosen


def known_suites() -> dict[str, BenchmarkSuite]:
    """Every suite of ``tasks/data/benchmarks.yaml`` by name."""
    raw: dict[str, dict[str, Any]] = yaml.safe_load(SUITES_FILE.read_text())
    return {
        name: BenchmarkSuite(
            name=name,
            description=entry["description"],
            homepage=entry["homepage"],
            tasks=tuple(entry["tasks"]),
            files=tuple(entry["files"]),
            archive=entry.get("archive"),
            hub_dataset=entry.get("hub_dataset"),
            revision=entry.get("revision"),
            zenodo_record=entry.get("zenodo_record"),
            zip_name=entry.get("zip_name"),
        )
        for name, entry in raw.items()
    }


def suite(name: str) -> BenchmarkSuite:
    suites = known_suites()
    if name not in suites:
        raise ConfigError(f"unknown benchmark suite {name!r}; known: {', '.join(sorted(suites))}")
    return suites[name]


def default_root(suite_name: str, cache: str | os.PathLike | None = None) -> Path:
    """``<cache>/benchmarks/<suite>``, the cache being ``$GENOMIX_CACHE`` or ~/.cache/genomix."""
    return cache_dir(cache) / "benchmarks" / suite_name


def fetch_suite(
    name: str,
    out: str | os.PathLike | None = None,
    tasks: list[str] | None = None,
    archive: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    quiet: bool = False,
) -> dict[str, Path]:
    """Download ``tasks`` of suite ``name`` (all by default) into ``out`` (default
    :func:`default_root`); returns each task's folder. ``archive`` is an already downloaded copy of an
    archive suite's zip (for machines where the archive's host needs a browser)."""
    spec = suite(name)
    root = Path(out).expanduser() if out is not None else default_root(name, cache)
    root.mkdir(parents=True, exist_ok=True)
    wanted = spec.select(tasks)
    missing = [t for t in wanted if not (root / t).is_dir()]
    if missing:
        if spec.archive is not None:
            _fetch_from_archive(spec, root, missing, archive, quiet)
        elif archive is not None:
            raise ConfigError(f"suite {name!r} is fetched task by task; --archive does not apply")
        elif spec.zenodo_record is not None:
            _fetch_from_zenodo(spec, root, missing, quiet)
        else:
            _fetch_from_hub(spec, root, missing, quiet)
    return {t: root / t for t in wanted}


def _publish(staging: Path, dest: Path, task: str, source: dict[str, Any]) -> None:
    """Check that ``staging`` reads as a task, record where it came from, and rename it into place."""
    data = load_task(staging, name=task)
    source = dict(source, task=task, examples={s: len(d) for s, d in data.splits.items()},
                  labels=data.label_names, fetched=datetime.datetime.now(datetime.timezone.utc).isoformat())
    (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, dest)


def _staging_dir(root: Path, task: str) -> Path:
    staging = root / ".staging" / task
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _fetch_from_archive(spec: BenchmarkSuite, root: Path, tasks: list[str], archive: str | os.PathLike | None,
                        quiet: bool) -> None:
    info = spec.archive
    assert info is not None
    fetched = archive is None
    if fetched:
        archive = _download_archive(info, root / ".downloads" / info["filename"], quiet)
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise DownloadError(f"--archive {archive}: no such file; pass the path of {info['filename']} as "
                            f"downloaded from {info['page']}")
    if not zipfile.is_zipfile(archive):
        if fetched:
            archive.unlink()  # not the archive: the next run must fetch again, not reuse this file
        raise DownloadError(
            f"{archive} is not a zip archive (Google Drive answers with an HTML page when its download quota "
            f"is exhausted or the link changed); download {info['filename']} in a browser from "
            f"{info['page']} and pass it with --archive"
        )
    with _checked_zip(archive) as zf:
        names = set(zf.namelist())
        prefix = _archive_root(names, spec, archive)
        for task in tasks:
            staging = _staging_dir(root, task)
            found = []
            for filename in spec.files:
                member = f"{prefix}{task}/{filename}"
                if member not in names:
                    continue
                with zf.open(member) as src, open(staging / filename, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                found.append(filename)
            if not found:
                raise InputFormatError(f"{archive}: no files of task {task} (looked for {prefix}{task}/"
                                       f"{{{','.join(spec.files)}}}); is this the {spec.name} archive?")
            _publish(staging, root / task, task, {"suite": spec.name, "archive": str(archive),
                                                  "url": info["url"], "files": found})


def _download_archive(info: dict[str, Any], dest: Path, quiet: bool) -> Path:
    """The suite's archive downloaded to ``dest`` (resuming its ``.part`` file); when nothing could be
    downloaded, the error also says how to pass a copy fetched elsewhere."""
    try:
        return download(info["url"], dest, sha256=info.get("sha256"), quiet=quiet)
    except DownloadError as exc:
        if dest.with_name(dest.name + ".part").exists():
            raise  # a transfer that got somewhere resumes with the same command
        raise DownloadError(f"{exc}; or download {info['filename']} from {info['page']} and pass it with "
                            "--archive") from None


def _checked_zip(path: Path) -> zipfile.ZipFile:
    """The zip at ``path``, opened after every member passed its CRC-32 check."""
    zf = zipfile.ZipFile(path)
    bad = zf.testzip()
    if bad is not None:
        zf.close()
        raise ChecksumError(f"{path}: member {bad} fails its CRC-32 check; the archive is corrupt: "
                            "delete it and download again")
    return zf


def _archive_root(names: set[str], spec: BenchmarkSuite, archive: Path) -> str:
    """The folder prefix (``""``, ``"GUE/"`` ...) under which the archive keeps its tasks: found from
    the shortest member path that ends in one of the suite's ``<task>/<file>``."""
    known = {f"{task}/{filename}" for task in spec.tasks for filename in spec.files}
    prefixes = sorted((name[: len(name) - len(tail)] for name in names for tail in known
                       if name == tail or name.endswith("/" + tail)), key=len)
    if not prefixes:
        raise InputFormatError(f"{archive}: holds none of the {spec.name} tasks' files (such as "
                               f"{spec.tasks[0]}/{spec.files[0]}); is this the {spec.name} archive?")
    return prefixes[0]


def hub_file_url(repo: str, revision: str, path: str) -> str:
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_HUB_ENDPOINT).rstrip("/")
    return f"{endpoint}/datasets/{repo}/resolve/{revision}/{path}"


class _KeepRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect instead of following it: the Hub puts a file's SHA-256 on its redirect."""

    def redirect_request(self, *args, **kwargs):  # noqa: D102 - urllib hook
        return None


def hub_file_sha256(url: str, timeout: float = 60.0) -> str | None:
    """The SHA-256 the Hub reports for an LFS file (``X-Linked-Etag`` of a HEAD on its resolve URL),
    ``None`` when the server names none (small files kept in git)."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": USER_AGENT})
    opener = urllib.request.build_opener(_KeepRedirect)
    try:
        with opener.open(request, timeout=timeout) as resp:
            headers = resp.headers
    except urllib.error.HTTPError as exc:
        if exc.code >= 400:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the suite's repository and revision") from None
        headers = exc.headers  # a redirect: its headers carry the checksum
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"could not reach {url}: {exc}; check the network (or HF_ENDPOINT)") from None
    etag = (headers.get("X-Linked-Etag") or "").strip('"')
    return etag.lower() if len(etag) == 64 and all(c in "0123456789abcdefABCDEF" for c in etag) else None


def _fetch_from_hub(spec: BenchmarkSuite, root: Path, tasks: list[str], quiet: bool) -> None:
    assert spec.hub_dataset is not None and spec.revision is not None
    for task in tasks:
        staging = _staging_dir(root, task)
        files = {}
        for filename in spec.files:
            url = hub_file_url(spec.hub_dataset, spec.revision, f"{task}/{filename}")
            sha256 = hub_file_sha256(url)
            # downloaded outside the staging folder (which every attempt starts afresh) and copied in, so
            # an interrupted task keeps its finished files and its .part file for the next run
            part_home = root / ".downloads" / task / filename
            download(url, part_home, sha256=sha256, quiet=quiet)
            shutil.copyfile(part_home, staging / filename)
            files[filename] = {"url": url, "sha256": sha256}
        _publish(staging, root / task, task, {"suite": spec.name, "repository": spec.hub_dataset,
                                              "revision": spec.revision, "files": files})
        shutil.rmtree(root / ".downloads" / task, ignore_errors=True)


def zenodo_files(record: str, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """The files of a Zenodo record by name: download ``url``, ``md5`` and ``size``, from the record's
    API (``$ZENODO_ENDPOINT/api/records/<record>``, default zenodo.org)."""
    endpoint = os.environ.get("ZENODO_ENDPOINT", DEFAULT_ZENODO_ENDPOINT).rstrip("/")
    url = f"{endpoint}/api/records/{record}"
    text = fetch_text(url, timeout, hint="check the suite's Zenodo record and the network (or ZENODO_ENDPOINT), "
                                         "and run the same command again")
    try:
        listing = json.loads(text)
    except ValueError as exc:
        raise DownloadError(f"{url}: not a JSON record listing ({exc}); run the same command again") from None
    files = {}
    for entry in listing.get("files") or []:
        algorithm, _, digest = str(entry.get("checksum", "")).partition(":")
        files[entry["key"]] = {
            "url": (entry.get("links") or {}).get("self") or f"{endpoint}/records/{record}/files/{entry['key']}?download=1",
            "md5": digest.lower() if algorithm == "md5" and re.fullmatch(r"[0-9a-fA-F]{32}", digest) else None,
            "size": entry.get("size"),
        }
    return files


_CLASS_FILE = re.compile(r"^(?:.*/)?([^/]+)/([^/]+)/([^/]+\.txt)$")


def _extract_class_folders(zf: zipfile.ZipFile, splits: tuple[str, ...], staging: Path, source: Path) -> None:
    """Copy ``<split>/<class>/<id>.txt`` members (under any top folder) into ``staging``."""
    found = 0
    for member in zf.namelist():
        match = _CLASS_FILE.match(member)
        if match is None or match.group(1) not in splits:
            continue
        split, cls, filename = match.groups()
        if cls in (".", "..") or filename.startswith("."):
            raise InputFormatError(f"{source}: member {member!r} is not a class folder entry")
        target = staging / split / cls / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        found += 1
    if not found:
        raise InputFormatError(f"{source}: holds no {'/'.join(splits)} class folders (<split>/<class>/<id>.txt)")


def _fetch_from_zenodo(spec: BenchmarkSuite, root: Path, tasks: list[str], quiet: bool) -> None:
    assert spec.zenodo_record is not None and spec.zip_name is not None
    files = zenodo_files(spec.zenodo_record)
    for task in tasks:
        key = spec.zip_name.format(task=task)
        if key not in files:
            raise DownloadError(f"Zenodo record {spec.zenodo_record} has no file {key}; it lists "
                                f"{', '.join(sorted(files)) or 'no files'}")
        entry = files[key]
        zipped = download(entry["url"], root / ".downloads" / key, md5=entry["md5"], size=entry["size"], quiet=quiet)
        staging = _staging_dir(root, task)
        with _checked_zip(Path(zipped)) as zf:
            _extract_class_folders(zf, spec.files, staging, Path(zipped))
        _publish(staging, root / task, task, {"suite": spec.name, "zenodo_record": spec.zenodo_record,
                                              "file": key, "url": entry["url"], "md5": entry["md5"]})
        Path(zipped).unlink()
