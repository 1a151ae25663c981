"""Helpers shared by the benchmark scripts: sample sets, machine facts, the doc.

The scripts run as ``python benchmarks/SCRIPT.py``, so Python finds this module
beside them without installing anything.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CACHE = REPO / "build" / "bench-samples"
DOC_PATH = REPO / "docs" / "benchmarks.md"
# Above this one-minute load average, other work shares the cores with the runs.
BUSY_LOAD = 0.5


def compile_bytecode(*folders: Path) -> None:
    """Write the bytecode of every module in `folders`, as an install does.

    With PYTHONDONTWRITEBYTECODE set, or in a read-only copy, Python would
    otherwise compile each module from source in every run it starts, which
    measured 40 ms of imgflow's start-up and none of an installed package's.
    """
    for folder in folders:
        compileall.compile_dir(str(folder), quiet=1)


def generate_cached(
    megapixels: float, count: int, *, seed: int, progressive: bool = False
) -> tuple[Path, tuple[Path, ...]]:
    """Generate a set of sample photos once and reuse it from the cache afterwards.

    Returns the set's folder and its files, ``IMG_0001.jpg`` onwards. The
    photos are the ones ``imgflow samples DIR --count COUNT --megapixels MP
    --seed SEED [--progressive]`` writes.
    """
    from imgflow import samples

    slug = f"{megapixels:g}mp-{count}-seed{seed}"
    if progressive:
        slug += "-progressive"
    directory = SAMPLE_CACHE / slug
    # The marker is kept beside the set, so imgflow finds only JPEGs in the folder.
    marker = SAMPLE_CACHE / f"{slug}.json"
    # A changed generator invalidates the cache through the hash of its source.
    generator_hash = hashlib.sha256(Path(samples.__file__).read_bytes()).hexdigest()
    settings = {
        "megapixels": megapixels,
        "count": count,
        "seed": seed,
        "progressive": progressive,
        "generator_sha256": generator_hash,
    }

    files = tuple(directory / f"IMG_{n:04d}.jpg" for n in range(1, count + 1))
    cached = marker.is_file() and json.loads(marker.read_text()) == settings
    if not (cached and all(path.is_file() for path in files)):
        kind = "progressive" if progressive else "baseline"
        print(f"Generating {count} {kind} sample photos of {megapixels:g} MP ...")
        if directory.exists():
            shutil.rmtree(directory)
        written = samples.generate(
            directory, count, megapixels=megapixels, seed=seed, progressive=progressive
        )
        files = tuple(written)
        SAMPLE_CACHE.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(settings))
    return directory, files


def find_imgflow(requested: Path | None) -> Path | None:
    """Return the imgflow command to measure, or None if none works."""
    candidates = [requested] if requested else []
    candidates.append(Path(sys.executable).parent / "imgflow")
    found = shutil.which("imgflow")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate is None or not candidate.is_file():
            continue
        check = subprocess.run(
            [str(candidate), "run", "--help"], capture_output=True, timeout=60
        )
        if check.returncode == 0:
            return candidate
        print(f"{candidate} run --help failed with exit code {check.returncode}")
    return None


def count_jpegs(directory: Path) -> int:
    return sum(1 for path in directory.rglob("*") if path.suffix.lower() == ".jpg")


def warm_page_cache(files: Sequence[Path]) -> None:
    """Read every input once, so the first contender does not pay for disk reads."""
    for path in files:
        path.read_bytes()


def command_output(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    return lines[0] if lines else "unavailable"


def one_minute_load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"


def is_busy(load: str) -> bool:
    return load != "unknown" and float(load) > BUSY_LOAD


def machine_description() -> dict[str, str]:
    """Collect the facts a reader needs to compare these numbers with theirs."""
    import PIL
    import pyvips

    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kb = int(meminfo.read_text().split()[1])
        memory = f"{total_kb / 1024 / 1024:.0f} GiB"
    libvips = ".".join(str(pyvips.version(i)) for i in range(3))
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "memory": memory,
        "system": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(),
        "libvips": f"{libvips} (pyvips {pyvips.__version__})",
        "vipsthumbnail": command_output(["vipsthumbnail", "--version"]),
        "parallel": command_output(["parallel", "--version"]),
        "pillow": PIL.__version__,
        "imgflow_commit": command_output(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"]
        ),
        "load": one_minute_load(),
    }


# docs/benchmarks.md has one unmarked part, written by run.py, and after it
# any number of parts between these markers, each written by another script.
_SECTION_START = "<!-- start of the part written by {owner} -->"
_SECTION_END = "<!-- end of the part written by {owner} -->"
_ANY_SECTION = re.compile(
    r"<!-- start of the part written by (?P<owner>\S+) -->\n"
    r".*?<!-- end of the part written by (?P=owner) -->\n",
    re.DOTALL,
)


def marked_sections(text: str) -> str:
    """Return every marked part of a page, markers included, in page order."""
    return "".join(match.group(0) for match in _ANY_SECTION.finditer(text))


def replace_section(text: str, owner: str, body: str) -> str:
    """Put ``body`` between ``owner``'s markers, appending them if absent."""
    start = _SECTION_START.format(owner=owner)
    end = _SECTION_END.format(owner=owner)
    section = f"{start}\n{body.rstrip()}\n{end}\n"
    pattern = re.compile(
        re.escape(start) + r"\n.*?" + re.escape(end) + r"\n", re.DOTALL
    )
    if pattern.search(text):
        return pattern.sub(lambda _match: section, text, count=1)
    return text.rstrip("\n") + "\n\n" + section
