"""Benchmark suites (GUE, Nucleotide Transformer, GenomicBenchmarks): where they are published and how to
fetch them into task folders that :func:`genomix.tasks.load_task` reads.

The suites are listed in ``tasks/data/benchmarks.yaml``. Fetching is all-or-nothing per task: files go to a
staging folder of this run under ``<out>/.staging/`` (removed whatever stops the run: Ctrl-C, a full disk, a
bad file; after a kill -9, by the next run), the task must hold every file of the suite's tasks and is read
back with :func:`load_task` (a malformed or truncated file fails there, with its line), a ``SOURCE.json`` is
written (with the sizes of the split files), and only then is the staging folder renamed to ``<out>/<task>``.
So a task folder with its ``SOURCE.json`` is complete and is skipped while its split files are intact
(:func:`genomix.tasks.published.damage`), and an interrupted run resumes where it stopped; downloads themselves
resume from their ``.part`` files (:func:`genomix.genome.download.download`). A task damaged since it was
published (a split file deleted, emptied or cut short) is fetched again and replaces the damaged folder only
once the new copy is complete. Unfinished work lies at least three folders down in ``<out>``, where nothing
that looks for ``<out>/<task>/train.*`` or ``<out>/<group>/<task>/train.*`` finds it.

Zips are read as :mod:`genomix.tasks.zips` says: members go only to paths made from the suite's own names,
links are refused, CRC-32s are checked, and the free space is checked before anything is unpacked.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import difflib
import json
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from ..errors import ChecksumError, ConfigError, DownloadError, GenomixError, InputFormatError
from ..genome.download import USER_AGENT, download, fetch_text, local_writes
from ..genome.registry import cache_dir
from ..outputs import make_output_dir, temp_sibling
from .labelled import load_task
from .published import SOURCE_FILE, damage, is_fetched, split_sizes
from .zips import check_space, class_folder_plan, open_zip, starts_like_zip, unpack, unpacking_bar

log = logging.getLogger(__name__)

SUITES_FILE = Path(__file__).parent / "data" / "benchmarks.yaml"
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
        every task when ``wanted`` is empty. An unknown name is refused with the names it may stand for
        (:func:`did_you_mean`), since names are matched exactly: ``emp/h3`` would be a folder of its own."""
        if not wanted:
            return list(self.tasks)
        chosen: list[str] = []
        for name in wanted:
            name = name.strip("/")
            matches = [t for t in self.tasks if t == name or t.startswith(name + "/")]
            if not matches:
                groups = {str(p) for t in self.tasks for p in Path(t).parents if str(p) != "."}
                raise ConfigError(f"suite {self.name!r} has no task or group {name!r}"
                                  f"{did_you_mean(name, [*self.tasks, *sorted(groups)])}; its tasks: "
                                  f"{', '.join(self.tasks)}")
            chosen.extend(t for t in matches if t not in chosen)
        return chosen


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean 'EMP/H3'?)`` for a ``name`` that is one of ``known`` but for case, or else is close to
    some of them (:func:`difflib.get_close_matches`, case ignored); empty when none is: a typo in a name is
    answered with the right spelling rather than with a list to search."""
    matches = [k for k in known if k.lower() == name.lower()]
    if not matches:
        lowered = {k.lower(): k for k in known}
        matches = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=3)]
    if not matches:
        return ""
    names = [repr(m) for m in matches]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f" (did you mean {listed}?)"


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
    """The suite called ``name``; an unknown name is refused with the list of known ones."""
    suites = known_suites()
    if name not in suites:
        raise ConfigError(f"unknown benchmark suite {name!r}{did_you_mean(name, list(suites))}; known: "
                          f"{', '.join(sorted(suites))}")
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
    archive suite's zip (for machines where the archive's host needs a browser).

    Tasks already published there are skipped while their split files are intact; one damaged since (a split
    file deleted, emptied or cut short: :func:`genomix.tasks.published.damage`) is fetched again, with a
    warning, and replaces the damaged folder once complete. Where that fetch fails (offline, a wrong
    ``archive``), the error also names what is damaged, which is left as it is: a damaged task is never
    returned as if it were whole without saying so."""
    spec = suite(name)
    root = Path(out).expanduser() if out is not None else default_root(name, cache)
    wanted = spec.select(tasks)
    created = not root.exists()
    root = make_output_dir(root, option="--out" if out is not None else "--cache-dir (or $GENOMIX_CACHE)")
    missing = [t for t in wanted if not is_fetched(root, t, spec.files)]
    damaged = {t: why for t in missing if (why := damage(root / t, spec.files))}
    for task, why in damaged.items():
        log.warning("task %s was damaged after it was downloaded (%s); fetching it again", task, why)
    try:
        _fetch_missing(spec, root, missing, archive, quiet)
    except GenomixError as exc:
        if created and not any(root.iterdir()):  # a refused first download leaves no empty folder behind
            root.rmdir()
        still = [f"{t} ({why})" for t in damaged if (why := damage(root / t, spec.files))]
        if still:
            which = f"task {still[0]} was" if len(still) == 1 else f"tasks {', '.join(still)} were"
            exc.args = (f"{exc}; so the damaged {which} left as it is: fix the above and run the same command "
                        "again, and do not use it meanwhile",)
        raise
    return {t: root / t for t in wanted}


def _fetch_missing(spec: BenchmarkSuite, root: Path, missing: list[str], archive: str | os.PathLike | None,
                   quiet: bool) -> None:
    """Fetch and publish the ``missing`` tasks of ``spec`` from wherever the suite is published."""
    if not missing:
        return
    if spec.archive is not None:
        _fetch_from_archive(spec, root, missing, archive, quiet)
    elif archive is not None:
        raise ConfigError(f"suite {spec.name!r} is fetched task by task; --archive does not apply")
    elif spec.zenodo_record is not None:
        _fetch_from_zenodo(spec, root, missing, quiet)
    else:
        _fetch_from_hub(spec, root, missing, quiet)


def _publish(staging: Path, dest: Path, task: str, source: dict[str, Any], files: tuple[str, ...]) -> None:
    """Check that ``staging`` holds ``files`` (the suite's files of every task) and reads as a task, record where
    it came from and the sizes of its split files, and rename it into place (where another run that fetched the
    same task got there first, its folder is kept; a damaged one is replaced). A missing split (a zip re-packed
    by hand, a GenomicBenchmarks zip without its test folder) is refused: :func:`load_task` reads whatever splits
    there are, and a published task whose files are intact is not fetched again, so a task without its training
    split would otherwise be kept for good."""
    origin = source.get("archive") or source.get("file") or source.get("repository")
    missing = [f for f in files if not (staging / f).exists()]
    if missing:
        raise InputFormatError(f"{origin}: task {task} lacks {', '.join(missing)} (every {source['suite']} task "
                               f"has {', '.join(files)}); this copy is incomplete, so nothing was written for "
                               f"{task}: fetch the suite again or choose other --tasks")
    try:
        data = load_task(staging, name=task)
    except InputFormatError as exc:  # name the file as the source has it, not the staging path removed next
        raise InputFormatError(f"{origin}: task {task}: {str(exc).replace(f'{staging}{os.sep}', '')}; nothing was "
                               f"written for {task}") from None
    source = dict(source, task=task, examples={s: len(d) for s, d in data.splits.items()},
                  labels=data.label_names, sizes=split_sizes(staging, files),
                  fetched=datetime.datetime.now(datetime.timezone.utc).isoformat())
    with local_writes(dest):
        (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not is_fetched(dest.parents[len(Path(task).parts) - 1], task, files):
            _replace(staging, dest)


def _replace(staging: Path, dest: Path) -> None:
    """Rename ``staging`` to ``dest``; a folder there (empty, or a damaged task) is first moved into the staging
    run's folder, which is removed whatever happens, so that ``dest`` is either the old folder or the new one."""
    aside = staging.with_name(staging.name + ".replaced")
    if dest.exists():
        os.replace(dest, aside)
    os.replace(staging, dest)
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def _staging(root: Path, task: str) -> Iterator[Path]:
    """An empty folder, ``<root>/.staging/<this process's name>/<task>``, in which to assemble ``task``: named by
    :func:`temp_sibling` so that two runs fetching into one folder do not write into each other's and a run killed
    outright (kill -9, the OOM killer), which cannot clean up, has its leftovers removed by the next run instead of
    keeping them for good; removed with all it holds when the block ends, so that an interrupted or failed task
    leaves nothing that looks like a task (and ``.staging`` too, once no run has a folder in it)."""
    base = root / ".staging"
    with local_writes(base):
        base.mkdir(exist_ok=True)
        run_dir = temp_sibling(base / "run")
        shutil.rmtree(run_dir, ignore_errors=True)  # a dead process's, that had this pid: ours are removed below
        run_dir.mkdir()
    try:
        with local_writes(run_dir):
            (run_dir / task).mkdir(parents=True)
        yield run_dir / task
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # another run's folder may still be in it
            base.rmdir()


def _fetch_from_archive(spec: BenchmarkSuite, root: Path, tasks: list[str], archive: str | os.PathLike | None,
                        quiet: bool) -> None:
    """Unpack ``tasks`` from the suite's zip, downloaded into ``<root>/.downloads`` unless ``archive`` is a copy.
    A downloaded zip that turns out to be no zip or corrupt is removed, so that the next run fetches it again
    instead of failing on it; once every task of the suite is published it is removed too."""
    info = spec.archive
    assert info is not None
    fetched = archive is None
    if fetched:
        archive = _download_archive(info, root / ".downloads" / info["filename"], quiet)
    archive = Path(archive).expanduser()
    if archive.is_dir():  # an unpacked copy: "no such file" would send the user looking for a missing path
        raise InputFormatError(f"--archive {archive} is a folder; pass the zip ({info['filename']}) itself, or give "
                               f"an unpacked task folder ({archive}/<task>) to `genomix finetune --task` as it is")
    if not archive.is_file():
        raise DownloadError(f"--archive {archive}: no such file; pass the path of {info['filename']} as "
                            f"downloaded from {info['page']}")
    if not zipfile.is_zipfile(archive):
        cut_short = starts_like_zip(archive)
        if fetched:
            archive.unlink()  # not the archive: the next run must fetch again, not reuse this file
        if cut_short:
            raise ChecksumError(f"{archive} is a zip archive cut short (its member list, kept at the end, is "
                                "missing): an interrupted or damaged copy; "
                                f"{'run the same command again, or ' if fetched else ''}download "
                                f"{info['filename']} again from {info['page']} and pass it with --archive")
        raise DownloadError(
            f"{archive} is not a zip archive (Google Drive answers with an HTML page when its download quota "
            f"is exhausted or the link changed); download {info['filename']} in a browser from "
            f"{info['page']} and pass it with --archive"
        )
    try:
        _unpack_archive_tasks(spec, root, tasks, archive, quiet)
    except ChecksumError as exc:
        if not fetched:
            raise ChecksumError(f"{exc}: download it again") from None
        archive.unlink(missing_ok=True)
        raise ChecksumError(f"{exc}; the download was removed: run the same command again to fetch it afresh") from None
    if fetched and all((root / t / SOURCE_FILE).is_file() and damage(root / t, spec.files) is None for t in spec.tasks):
        archive.unlink(missing_ok=True)


def _unpack_archive_tasks(spec: BenchmarkSuite, root: Path, tasks: list[str], archive: Path, quiet: bool) -> None:
    """Publish ``tasks`` from the archive suite's zip ``archive``, one all-or-nothing task at a time."""
    info = spec.archive
    assert info is not None
    with open_zip(archive) as zf:
        plans = _archive_plans(zf, spec, tasks, archive)
        members = [m for plan in plans.values() for m in plan.values()]
        check_space(members, root, archive)
        with unpacking_bar(members, archive, quiet) as progress:
            for task, plan in plans.items():
                with _staging(root, task) as staging:
                    unpack(zf, plan, staging, archive, progress)
                    _publish(staging, root / task, task, {"suite": spec.name, "archive": str(archive.resolve()),
                                                          "url": info["url"], "files": list(plan)}, spec.files)


def _archive_plans(zf: zipfile.ZipFile, spec: BenchmarkSuite, tasks: list[str],
                   archive: Path) -> dict[str, dict[str, zipfile.ZipInfo]]:
    """For each task, its files (the suite's names) -> the zip members that hold them; a task with none is
    refused before anything is unpacked."""
    members = {info.filename: info for info in zf.infolist()}
    prefix = _archive_root(set(members), spec, archive)
    plans = {}
    for task in tasks:
        plans[task] = {f: members[f"{prefix}{task}/{f}"] for f in spec.files if f"{prefix}{task}/{f}" in members}
        if not plans[task]:
            raise InputFormatError(f"{archive}: no files of task {task} (looked for {prefix}{task}/"
                                   f"{{{','.join(spec.files)}}}); is this the {spec.name} archive?")
    return plans


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


def _archive_root(names: set[str], spec: BenchmarkSuite, archive: Path) -> str:
    """The folder prefix (``""``, ``"GUE/"`` ...) under which the archive keeps its tasks: the one under which
    most member paths end in one of the suite's ``<task>/<file>`` (the shortest of equals), so that a stray copy
    of a file elsewhere in the archive does not hide the whole tree."""
    known = {f"{task}/{filename}" for task in spec.tasks for filename in spec.files}
    found = collections.Counter(name[: len(name) - len(tail)] for name in names for tail in known
                                if name == tail or name.endswith("/" + tail))
    if not found:
        raise InputFormatError(f"{archive}: holds none of the {spec.name} tasks' files (such as "
                               f"{spec.tasks[0]}/{spec.files[0]}); is this the {spec.name} archive?")
    return max(found, key=lambda prefix: (found[prefix], -len(prefix)))


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
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the suite's repository and "
                                "revision") from None
        headers = exc.headers  # a redirect: its headers carry the checksum
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"could not reach {url}: {exc}; check the network (or HF_ENDPOINT)") from None
    etag = (headers.get("X-Linked-Etag") or "").strip('"')
    return etag.lower() if len(etag) == 64 and all(c in "0123456789abcdefABCDEF" for c in etag) else None


def _fetch_from_hub(spec: BenchmarkSuite, root: Path, tasks: list[str], quiet: bool) -> None:
    """Download each task's files, verified against the Hub's SHA-256, and publish the task. The files are
    downloaded to ``<root>/.downloads/hub/<task>/`` (outside the staging folder, which does not outlive a run)
    so that an interrupted task keeps its finished files and its ``.part`` file for the next run."""
    assert spec.hub_dataset is not None and spec.revision is not None
    for task in tasks:
        downloads = root / ".downloads" / "hub" / task
        files = {}
        for filename in spec.files:
            url = hub_file_url(spec.hub_dataset, spec.revision, f"{task}/{filename}")
            sha256 = hub_file_sha256(url)
            download(url, downloads / filename, sha256=sha256, quiet=quiet)
            files[filename] = {"url": url, "sha256": sha256}
        with _staging(root, task) as staging:
            with local_writes(staging):
                for filename in spec.files:
                    shutil.copyfile(downloads / filename, staging / filename)
            _publish(staging, root / task, task, {"suite": spec.name, "repository": spec.hub_dataset,
                                                  "revision": spec.revision, "files": files}, spec.files)
        shutil.rmtree(downloads, ignore_errors=True)


def zenodo_files(record: str, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """The files of a Zenodo record by name: download ``url``, ``md5`` and ``size``, from the record's
    API (``$ZENODO_ENDPOINT/api/records/<record>``, default zenodo.org)."""
    endpoint = os.environ.get("ZENODO_ENDPOINT", DEFAULT_ZENODO_ENDPOINT).rstrip("/")
    url = f"{endpoint}/api/records/{record}"
    text = fetch_text(url, timeout, hint="check the suite's Zenodo record (or ZENODO_ENDPOINT) and run the same "
                                         "command again")
    try:
        listing = json.loads(text)
    except ValueError as exc:
        raise DownloadError(f"{url}: not a JSON record listing ({exc}); run the same command again") from None
    files = {}
    for entry in listing.get("files") or []:
        algorithm, _, digest = str(entry.get("checksum", "")).partition(":")
        files[entry["key"]] = {
            "url": ((entry.get("links") or {}).get("self")
                    or f"{endpoint}/records/{record}/files/{entry['key']}?download=1"),
            "md5": digest.lower() if algorithm == "md5" and re.fullmatch(r"[0-9a-fA-F]{32}", digest) else None,
            "size": entry.get("size"),
        }
    return files


def _fetch_from_zenodo(spec: BenchmarkSuite, root: Path, tasks: list[str], quiet: bool) -> None:
    """Download each task's zip from the Zenodo record (verified against its MD5 and size), unpack its class
    folders and publish the task; the zip is removed once its task is published."""
    assert spec.zenodo_record is not None and spec.zip_name is not None
    files = zenodo_files(spec.zenodo_record)
    for task in tasks:
        key = spec.zip_name.format(task=task)
        if key not in files:
            raise DownloadError(f"Zenodo record {spec.zenodo_record} has no file {key}; it lists "
                                f"{', '.join(sorted(files)) or 'no files'}")
        entry = files[key]
        zipped = download(entry["url"], root / ".downloads" / key, md5=entry["md5"], size=entry["size"], quiet=quiet)
        with open_zip(zipped) as zf, _staging(root, task) as staging:
            plan = class_folder_plan(zf, spec.files, zipped)
            check_space(list(plan.values()), root, zipped)
            with unpacking_bar(list(plan.values()), zipped, quiet) as progress:
                unpack(zf, plan, staging, zipped, progress)
            _publish(staging, root / task, task, {"suite": spec.name, "zenodo_record": spec.zenodo_record,
                                                  "file": key, "url": entry["url"], "md5": entry["md5"]}, spec.files)
        zipped.unlink()
