"""SQLite catalog, stored as `catalog.sqlite` in the output folder."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgflow.catalog.base import RunInfo
from imgflow.errors import Status, UsageError
from imgflow.records import ImageResult, Source
from imgflow.stages.store import SIDECAR_FOLDER

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    mode TEXT NOT NULL,
    workers INTEGER NOT NULL,
    config_sha256 TEXT NOT NULL,
    config TEXT,
    inputs TEXT NOT NULL,
    done INTEGER,
    rejected INTEGER,
    failed INTEGER
);
CREATE TABLE IF NOT EXISTS images (
    source TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    source_size INTEGER,
    source_mtime_ns INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    key TEXT,
    sha256 TEXT,
    format TEXT,
    width INTEGER,
    height INTEGER,
    display_width INTEGER,
    display_height INTEGER,
    bands INTEGER,
    bit_depth INTEGER,
    metadata TEXT,
    warnings TEXT,
    config_sha256 TEXT,
    run_id INTEGER REFERENCES runs(id),
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images(sha256);
CREATE TABLE IF NOT EXISTS variants (
    source TEXT NOT NULL REFERENCES images(source) ON DELETE CASCADE,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    format TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    mtime_ns INTEGER,
    PRIMARY KEY (source, name)
);
CREATE TABLE IF NOT EXISTS rejections (
    source TEXT PRIMARY KEY REFERENCES images(source) ON DELETE CASCADE,
    status TEXT NOT NULL,
    stage TEXT,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    traceback TEXT,
    run_id INTEGER REFERENCES runs(id),
    updated_at TEXT NOT NULL
);
"""

# Journal states of an image in the catalog. A failed image that has used
# up its attempts is "dead". A later run marks it pending and then in
# progress like any other image, so the dead-letter queue is read from the
# rejections table, not from this state (see `SQLiteCatalog.dead_letters`).
PENDING = "pending"
IN_PROGRESS = "in_progress"
DONE = "done"
REJECTED = "rejected"
DEAD = "dead"
FINAL_STATES = (DONE, REJECTED)

_STATE_OF = {Status.DONE: DONE, Status.REJECTED: REJECTED, Status.FAILED: DEAD}


# SQLite's names for a file that is not a sound database. Other errors at
# open (a full disk, a file size limit, a read-only folder) leave it intact.
_DAMAGED = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}
# A sound database whose tables are not the ones imgflow writes.
_OTHER_SCHEMA = re.compile(r"(no such (table|column)|table \w+ has no column)")


def remedy(path: Path, exc: sqlite3.Error) -> str:
    """Return what to do about a SQLite error on the catalog at `path`."""
    if getattr(exc, "sqlite_errorname", "") in _DAMAGED:
        return "move it away to start a new catalog, or restore it from a backup"
    if _OTHER_SCHEMA.match(str(exc)):
        return (
            "it is not an imgflow catalog, or one of another version; move it "
            "away to start a new catalog"
        )
    return (
        "check the free space, the file size limit (ulimit -f) and the "
        f"permissions of {path.parent}"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SQLiteCatalog:
    """Catalog in one SQLite file, which is also the run's journal.

    Each outcome is committed as it is recorded (WAL mode, so a commit costs
    tens of microseconds), so a killed run loses no finished image. Larger
    `commit_every` or `commit_seconds` batch commits instead.
    """

    def __init__(
        self, path: Path, *, commit_every: int = 1, commit_seconds: float = 1.0
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise UsageError(
                f"the catalog {path} is a folder, not a file; move it away to "
                "start a new catalog"
            )
        self.path = path
        # Connecting fails on a dangling symlink, or a folder that may not be written.
        with self.errors_as_usage_errors("be opened"):
            self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.row_factory = sqlite3.Row
        try:
            with self.errors_as_usage_errors("be opened"):
                self._check_is_catalog()
                self.connection.execute("PRAGMA journal_mode=WAL")
                self.connection.execute("PRAGMA synchronous=NORMAL")
                self.connection.execute("PRAGMA foreign_keys=ON")
                self.connection.executescript(SCHEMA)
                self._add_missing_columns()
        except UsageError:
            self.connection.close()
            raise
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self._uncommitted = 0
        self._last_commit = time.monotonic()
        self._config_sha256 = ""

    @contextlib.contextmanager
    def errors_as_usage_errors(self, action: str) -> Iterator[None]:
        """Turn a SQLite error in the block into a UsageError that names the remedy."""
        try:
            yield
        except sqlite3.Error as exc:
            raise UsageError(
                f"the catalog {self.path} cannot {action} ({exc}); "
                f"{remedy(self.path, exc)}"
            ) from None

    def _check_is_catalog(self) -> None:
        """Raise UsageError, before anything is written, for another program's database.

        A new file has no tables. A catalog of any imgflow version has an
        `images` table keyed by `source`.
        """
        tables = {
            row["name"]
            for row in self.connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        if not tables:
            return
        columns = {
            row["name"] for row in self.connection.execute("PRAGMA table_info(images)")
        }
        if "source" not in columns:
            raise UsageError(
                f"the catalog {self.path} contains tables of another program "
                f"({', '.join(sorted(tables))}); it is not an imgflow catalog, so "
                "move it away or name another --out"
            )

    def _add_missing_columns(self) -> None:
        """Bring a catalog written by an earlier version up to this schema."""
        columns = {
            row["name"]
            for row in self.connection.execute("PRAGMA table_info(variants)")
        }
        if "mtime_ns" not in columns:
            # Rows written before stay NULL, so their files are checked by size only.
            self.connection.execute("ALTER TABLE variants ADD COLUMN mtime_ns INTEGER")

    def _begin(self) -> None:
        if not self.connection.in_transaction:
            self.connection.execute("BEGIN")

    def _maybe_commit(self, force: bool = False) -> None:
        self._uncommitted += 1
        due = time.monotonic() - self._last_commit >= self.commit_seconds
        if force or due or self._uncommitted >= self.commit_every:
            if self.connection.in_transaction:
                self.connection.execute("COMMIT")
            self._uncommitted = 0
            self._last_commit = time.monotonic()

    def start_run(self, run: RunInfo) -> int:
        self._config_sha256 = run.config_sha256
        cursor = self.connection.execute(
            "INSERT INTO runs (started_at, mode, workers, config_sha256, config, "
            "inputs) VALUES (?, ?, ?, ?, ?, ?)",
            (
                _now(),
                run.mode,
                run.workers,
                run.config_sha256,
                run.config_json,
                json.dumps(run.inputs),
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def record(self, run_id: int, result: ImageResult) -> list[str]:
        """Store the outcome of one image, replacing any earlier outcome.

        Returns the output files (relative paths) of the earlier outcome that
        the new one no longer has and no other source uses, for removal.
        """
        self._begin()
        source = result.source.text
        earlier = self._outputs_of(source)
        meta = result.metadata
        now = _now()
        self.connection.execute("DELETE FROM variants WHERE source = ?", (source,))
        self.connection.execute("DELETE FROM rejections WHERE source = ?", (source,))
        self.connection.execute(
            "INSERT INTO images (source, status, source_size, source_mtime_ns, "
            "attempts, key, sha256, format, width, height, "
            "display_width, display_height, bands, bit_depth, metadata, warnings, "
            "config_sha256, run_id, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source) DO UPDATE SET status = excluded.status, "
            "source_size = excluded.source_size, "
            "source_mtime_ns = excluded.source_mtime_ns, attempts = excluded.attempts, "
            "key = excluded.key, sha256 = excluded.sha256, format = excluded.format, "
            "width = excluded.width, height = excluded.height, "
            "display_width = excluded.display_width, "
            "display_height = excluded.display_height, bands = excluded.bands, "
            "bit_depth = excluded.bit_depth, metadata = excluded.metadata, "
            "warnings = excluded.warnings, config_sha256 = excluded.config_sha256, "
            "run_id = excluded.run_id, updated_at = excluded.updated_at",
            (
                source,
                _STATE_OF[result.status],
                result.source.size,
                result.source.mtime_ns,
                result.attempts,
                result.key,
                result.sha256,
                meta.get("format"),
                meta.get("width"),
                meta.get("height"),
                meta.get("display_width"),
                meta.get("display_height"),
                meta.get("bands"),
                meta.get("bit_depth"),
                json.dumps(meta, sort_keys=True) if meta else None,
                json.dumps(result.warnings),
                self._config_sha256,
                run_id,
                now,
            ),
        )
        if result.status is Status.DONE:
            self.connection.executemany(
                "INSERT INTO variants (source, name, path, width, height, format, "
                "bytes, sha256, mtime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        source,
                        v.name,
                        v.path,
                        v.width,
                        v.height,
                        v.format,
                        v.bytes,
                        v.sha256,
                        v.mtime_ns if v.mtime_ns >= 0 else None,
                    )
                    for v in result.variants
                ],
            )
        else:
            assert result.reason is not None
            self.connection.execute(
                "INSERT INTO rejections (source, status, stage, reason, message, "
                "attempts, traceback, run_id, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    source,
                    result.status.value,
                    result.stage,
                    result.reason.value,
                    result.message or "",
                    result.attempts,
                    result.traceback,
                    run_id,
                    now,
                ),
            )
        self._maybe_commit()
        current = self._outputs_of(source)
        return sorted(
            p for p in earlier - current if not self._used_elsewhere(p, source)
        )

    def _outputs_of(self, source: str) -> set[str]:
        paths = {
            row["path"]
            for row in self.connection.execute(
                "SELECT path FROM variants WHERE source = ?", (source,)
            )
        }
        row = self.connection.execute(
            "SELECT key FROM images WHERE source = ?", (source,)
        ).fetchone()
        if row is not None and row["key"]:
            paths.add(f"{SIDECAR_FOLDER}/{row['key']}.json")
        return paths

    def _used_elsewhere(self, path: str, source: str) -> bool:
        if path.startswith(f"{SIDECAR_FOLDER}/"):
            key = path.removeprefix(f"{SIDECAR_FOLDER}/").removesuffix(".json")
            query = "SELECT 1 FROM images WHERE key = ? AND source != ? AND status = ?"
            return (
                self.connection.execute(query, (key, source, DONE)).fetchone()
                is not None
            )
        query = "SELECT 1 FROM variants WHERE path = ? AND source != ?"
        return self.connection.execute(query, (path, source)).fetchone() is not None

    def is_recorded_done(self, key: str) -> bool:
        """True when some source's finished outputs use this key."""
        query = "SELECT 1 FROM images WHERE key = ? AND status = ?"
        return self.connection.execute(query, (key, DONE)).fetchone() is not None

    def finish_run(self, run_id: int, counts: dict[str, int]) -> None:
        self._begin()
        self.connection.execute(
            "UPDATE runs SET finished_at = ?, done = ?, rejected = ?, failed = ? "
            "WHERE id = ?",
            (
                _now(),
                counts.get("done", 0),
                counts.get("rejected", 0),
                counts.get("failed", 0),
                run_id,
            ),
        )
        self._maybe_commit(force=True)

    def mark(self, state: str, sources: list[Source]) -> None:
        """Record `state` (pending or in progress) for sources about to run.

        Committed at once, so a run killed from here on leaves a journal
        that names every image it had not finished.
        """
        self._begin()
        now = _now()
        self.connection.executemany(
            "INSERT INTO images (source, status, source_size, source_mtime_ns, "
            "config_sha256, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (source) DO UPDATE SET status = excluded.status, "
            "updated_at = excluded.updated_at",
            [
                (s.text, state, s.size, s.mtime_ns, self._config_sha256, now)
                for s in sources
            ],
        )
        self._maybe_commit(force=state == PENDING)

    def completed(self, config_sha256: str) -> dict[str, dict[str, Any]]:
        """Return the final rows made with this config, keyed by source path.

        Each row has the status, the image key, the source's size and
        modification time when it was processed, and the (path, bytes,
        mtime_ns) of each of its variants, mtime_ns None where unknown.
        """
        rows = self.connection.execute(
            "SELECT source, status, key, source_size, source_mtime_ns FROM images "
            "WHERE config_sha256 = ? AND status IN (?, ?)",
            (config_sha256, *FINAL_STATES),
        )
        found = {row["source"]: dict(row) | {"variants": []} for row in rows}
        variants = self.connection.execute(
            "SELECT source, path, bytes, mtime_ns FROM variants"
        )
        for row in variants:
            if row["source"] in found:
                found[row["source"]]["variants"].append(
                    (row["path"], row["bytes"], row["mtime_ns"])
                )
        return found

    def last_config(self) -> str | None:
        """Return the configuration (JSON) of the latest run, if any."""
        row = self.connection.execute(
            "SELECT config FROM runs WHERE config IS NOT NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row["config"])

    def dead_letters(self) -> list[dict[str, Any]]:
        """Return the images in the dead-letter queue, oldest first.

        The queue contains every image whose latest recorded outcome, kept in
        the rejections table, is a failure. Only `record()` and `purge()`
        change that table, so an image stays queued while a later run has it
        pending or in progress, and after that run stops or is killed before
        recording a new outcome.
        """
        return self._rows(
            "SELECT * FROM rejections WHERE status = ? ORDER BY updated_at, source",
            (Status.FAILED.value,),
        )

    def purge(self, sources: list[str]) -> int:
        """Remove images from the catalog (and the dead-letter queue)."""
        self._begin()
        cursor = self.connection.executemany(
            "DELETE FROM images WHERE source = ?", [(s,) for s in sources]
        )
        self._maybe_commit(force=True)
        return cursor.rowcount

    def _rows(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.connection.execute(sql, parameters)]

    def images(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM images ORDER BY source")

    def variants(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM variants ORDER BY source, name")

    def rejections(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM rejections ORDER BY source")

    def close(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("COMMIT")
        self.connection.close()
