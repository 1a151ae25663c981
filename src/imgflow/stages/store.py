"""Store stage: the output layout and atomic file writes.

Layout of an output folder:

    OUT/catalog.sqlite          the catalog (images, variants, rejections)
    OUT/<variant>/<key><ext>    one folder per variant, e.g. thumb/IMG_1-ab12.jpg
    OUT/meta/<key>.json         the JSON sidecar of each image

A key is the source's file stem made safe, then 16 hex digits of the
SHA-256 of its bytes. Two different photos called IMG_0001.jpg in two folders
get two keys; the same bytes always get the same key, so a re-run replaces
files instead of adding copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imgflow.config import SIDECAR_FOLDER
from imgflow.errors import Reason, StageFailed, is_lasting
from imgflow.records import VariantRecord
from imgflow.stages.transform import Rendered

STAGE = "store"
CATALOG_NAME = "catalog.sqlite"
# Held by a run for its whole length, so two runs never share a folder.
LOCK_NAME = ".imgflow.lock"
TEMP_PREFIX = ".imgflow-"


def image_key(source_path: str, sha256: str) -> str:
    """Derive a collision-free, filesystem-safe name for one source image."""
    stem = Path(source_path).stem
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:64] or "image"
    return f"{safe}-{sha256[:16]}"


def write_atomic(path: Path, data: bytes, *, fsync: bool) -> int:
    """Write `data` to a temporary name in the same folder, then rename it.

    Readers see either the old file or the complete new one. With `fsync`,
    the data reaches the disk before the rename, so a power cut cannot leave
    a renamed but empty file. Returns the file's modification time in
    nanoseconds, which the rename keeps.
    """
    temp = path.with_name(
        f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "xb") as handle:
            handle.write(data)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
            mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
        os.replace(temp, path)
    except BaseException as exc:
        # Also on KeyboardInterrupt: no temporary file may outlive the write.
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass  # The folder itself is unusable, so no temporary file exists.
        if not isinstance(exc, OSError):
            raise
        raise StageFailed(
            Reason.WRITE_FAILED,
            f"cannot write {path}: {exc.strerror or exc}",
            stage=STAGE,
            lasting=is_lasting(exc),
        ) from None
    return mtime_ns


class OutputLayout:
    """Paths inside one output folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG_NAME

    def variant_path(self, name: str, key: str, suffix: str) -> Path:
        return self.root / name / f"{key}{suffix}"

    def sidecar_path(self, key: str) -> Path:
        return self.root / SIDECAR_FOLDER / f"{key}.json"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def manages(self, path: Path, variant_names: Iterable[str]) -> bool:
        """True when `path` is a file imgflow keeps in this output folder.

        That is the catalog and its journal files, the run lock, and
        anything in the sidecar folder or a variant's folder. Both paths
        are compared with symlinks resolved.
        """
        root = Path(os.path.realpath(self.root))
        target = Path(os.path.realpath(path))
        if target.parent == root:
            return target.name.startswith(CATALOG_NAME) or target.name == LOCK_NAME
        if root not in target.parents:
            return False
        folder = target.relative_to(root).parts[0]
        return folder == SIDECAR_FOLDER or folder in set(variant_names)


def store_variants(
    layout: OutputLayout, key: str, rendered: list[Rendered], *, fsync: bool
) -> list[VariantRecord]:
    records: list[VariantRecord] = []
    for item in rendered:
        path = layout.variant_path(item.name, key, item.suffix)
        try:
            mtime_ns = write_atomic(path, item.data, fsync=fsync)
        except StageFailed:
            # An image is stored whole or not at all: no partial variant set.
            remove_variants(layout, records)
            raise
        records.append(
            VariantRecord(
                name=item.name,
                path=layout.relative(path),
                width=item.width,
                height=item.height,
                format=item.format,
                bytes=len(item.data),
                sha256=hashlib.sha256(item.data).hexdigest(),
                mtime_ns=mtime_ns,
            )
        )
    return records


def remove_variants(layout: OutputLayout, variants: list[VariantRecord]) -> None:
    """Remove the written files of `variants`, those already gone included."""
    for variant in variants:
        (layout.root / variant.path).unlink(missing_ok=True)


def sidecar_bytes(
    key: str,
    metadata: dict[str, Any],
    variants: list[VariantRecord],
    warnings: list[str],
) -> bytes:
    document = {
        "key": key,
        "metadata": metadata,
        "variants": {
            variant.name: {
                "path": variant.path,
                "width": variant.width,
                "height": variant.height,
                "format": variant.format,
                "bytes": variant.bytes,
                "sha256": variant.sha256,
            }
            for variant in variants
        },
        "warnings": warnings,
    }
    return (
        json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    ).encode()


def store_sidecar(
    layout: OutputLayout,
    key: str,
    metadata: dict[str, Any],
    variants: list[VariantRecord],
    warnings: list[str],
    *,
    fsync: bool,
) -> None:
    data = sidecar_bytes(key, metadata, variants, warnings)
    write_atomic(layout.sidecar_path(key), data, fsync=fsync)
