"""Compare imgflow's throughput with hand-written references on the same job.

The job: for each sample JPEG, three variants of 2048, 1024 and 256 px on the long
edge at JPEG quality 85, with the EXIF orientation applied and the EXIF block read.
Contenders, each with 1 and 2 worker processes:

- ``imgflow run SET --out DIR --mode parallel --workers N --quiet``, and
  ``--mode sequential`` as a second one-worker row;
- ``ref_pyvips.py``: one libvips ``thumbnail`` to 2048 px, the smaller variants
  derived from it in memory;
- ``vipsthumbnail`` under GNU parallel, three invocations per file;
- ``ref_pillow.py``: Pillow ``draft`` and ``thumbnail``, cascaded.

The sample photos come from ``imgflow.samples`` and are cached under
``build/bench-samples``. Runs are interleaved (every contender once per round,
the starting contender rotating between rounds) and the median of the rounds is
reported. Each run is timed inside a small wrapper process whose
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the peak RSS of the largest single
process in the run's process tree, which for a pool is a worker or its parent.

Usage: python benchmarks/run.py [--quick] [--write-doc]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

from common import (
    DOC_PATH,
    REPO,
    compile_bytecode,
    count_jpegs,
    find_imgflow,
    generate_cached,
    is_busy,
    machine_description,
    marked_sections,
    one_minute_load,
    warm_page_cache,
)

OUTPUT_ROOT = REPO / "build" / "bench-out"
SAMPLE_SEED = 0
RUN_TIMEOUT_SECONDS = 900
INSTALL_HINT = "apt-get install -y libvips-tools parallel"
REFERENCE_KEYS = ("ref_pyvips", "vipsthumbnail")
BUSY_NOTE = (
    "\nOther programs were running on the machine during this measurement, so the\n"
    "wall-time ratios carry more noise than usual. The CPU time per image is less\n"
    "affected. Rerun on an idle machine for a clean record.\n"
)

# Runs one command, then prints its wall time and the peak RSS of the largest
# process in its tree as JSON. It runs in a fresh process per measurement,
# because RUSAGE_CHILDREN accumulates over every child a process has waited for.
WRAPPER_CODE = """
import json, os, resource, signal, subprocess, sys, time
timeout = float(sys.argv[1])
start = time.perf_counter()
child = subprocess.Popen(
    sys.argv[2:],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    start_new_session=True,
)
try:
    _, stderr = child.communicate(timeout=timeout)
    timed_out = False
except subprocess.TimeoutExpired:
    os.killpg(child.pid, signal.SIGKILL)
    _, stderr = child.communicate()
    timed_out = True
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "returncode": child.returncode,
    "timed_out": timed_out,
    "seconds": seconds,
    "max_rss_kb": usage.ru_maxrss,
    "cpu_seconds": usage.ru_utime + usage.ru_stime,
    "stderr": stderr.decode(errors="replace")[-2000:],
}))
"""


@dataclass(frozen=True)
class SampleSet:
    name: str
    megapixels: float
    count: int
    quick_count: int


SAMPLE_SETS = (
    SampleSet("12 MP", 12.0, 48, 8),
    SampleSet("0.3 MP", 0.3, 200, 40),
    # One small photo: the run is almost all start-up, which this set shows.
    SampleSet("start-up", 0.3, 1, 1),
)


@dataclass(frozen=True)
class Samples:
    spec: SampleSet
    directory: Path
    files: tuple[Path, ...]


CommandBuilder = Callable[[Samples, Path], list[str]]


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    workers: int
    build_command: CommandBuilder


@dataclass
class Measurement:
    seconds: list[float] = field(default_factory=list)
    max_rss_kb: list[int] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: set[str] = field(default_factory=set)

    def images_per_second(self, count: int) -> float | None:
        if not self.seconds:
            return None
        return count / statistics.median(self.seconds)

    def cpu_ms_per_image(self, count: int) -> float | None:
        if not self.cpu_seconds:
            return None
        return 1000 * statistics.median(self.cpu_seconds) / count

    def peak_rss_mb(self) -> float | None:
        if not self.max_rss_kb:
            return None
        return statistics.median(self.max_rss_kb) / 1024


Results = dict[tuple[str, str, int], Measurement]


def prepare_samples(spec: SampleSet, quick: bool) -> Samples:
    """Generate a sample set once and reuse it from the cache afterwards."""
    count = spec.quick_count if quick else spec.count
    directory, files = generate_cached(spec.megapixels, count, seed=SAMPLE_SEED)
    return Samples(spec, directory, files)


def build_contenders(
    imgflow: Path | None, worker_counts: Sequence[int]
) -> list[Contender]:
    """List every contender whose tools are installed, and print how to get others."""
    python = sys.executable
    scripts_dir = Path(__file__).resolve().parent
    contenders: list[Contender] = []

    if imgflow is None:
        print(
            "imgflow command not found or not working: its rows are skipped. "
            "Install the project with `make .venv/.installed` or pass --imgflow."
        )
    else:
        for workers in worker_counts:
            contenders.append(
                Contender(
                    "imgflow",
                    "imgflow --mode parallel",
                    workers,
                    imgflow_command(imgflow, "parallel", workers),
                )
            )
        contenders.append(
            Contender(
                "imgflow-sequential",
                "imgflow --mode sequential",
                1,
                imgflow_command(imgflow, "sequential", None),
            )
        )

    missing = [tool for tool in ("vipsthumbnail", "parallel") if not shutil.which(tool)]
    if missing:
        print(
            f"{' and '.join(missing)} not found: the vipsthumbnail rows are skipped. "
            f"Install them with `{INSTALL_HINT}`."
        )

    for workers in worker_counts:
        contenders.append(
            Contender(
                "ref_pyvips",
                "ref_pyvips.py",
                workers,
                script_command(python, scripts_dir / "ref_pyvips.py", workers),
            )
        )
        if not missing:
            contenders.append(
                Contender(
                    "vipsthumbnail",
                    "vipsthumbnail + GNU parallel",
                    workers,
                    vipsthumbnail_command(workers),
                )
            )
        contenders.append(
            Contender(
                "ref_pillow",
                "ref_pillow.py",
                workers,
                script_command(python, scripts_dir / "ref_pillow.py", workers),
            )
        )
    return contenders


def imgflow_command(imgflow: Path, mode: str, workers: int | None) -> CommandBuilder:
    def build(samples: Samples, out_dir: Path) -> list[str]:
        command = [str(imgflow), "run", str(samples.directory), "--out", str(out_dir)]
        command += ["--mode", mode]
        if workers is not None:
            command += ["--workers", str(workers)]
        return [*command, "--quiet"]

    return build


def script_command(python: str, script: Path, workers: int) -> CommandBuilder:
    def build(samples: Samples, out_dir: Path) -> list[str]:
        command = [python, str(script), "--out", str(out_dir)]
        command += ["--workers", str(workers)]
        return command + [str(path) for path in samples.files]

    return build


def vipsthumbnail_command(workers: int) -> CommandBuilder:
    def build(samples: Samples, out_dir: Path) -> list[str]:
        # One job per file and size. "-q" quotes each argument for the shell that
        # parallel runs, and "NxN>" requests a shrink only, as the others do.
        return [
            "parallel",
            "--will-cite",
            "--halt",
            "now,fail=1",
            "-q",
            "-j",
            str(workers),
            "vipsthumbnail",
            "{1}",
            "-s",
            "{2}x{2}>",
            "-o",
            f"{out_dir}/%s_{{2}}.jpg[Q=85]",
            ":::",
            *[str(path) for path in samples.files],
            ":::",
            "2048",
            "1024",
            "256",
        ]

    return build


class RunReport(TypedDict):
    returncode: int
    timed_out: bool
    seconds: float
    max_rss_kb: int
    cpu_seconds: float
    stderr: str


def measure_once(command: list[str]) -> RunReport:
    completed = subprocess.run(
        [sys.executable, "-c", WRAPPER_CODE, str(RUN_TIMEOUT_SECONDS), *command],
        capture_output=True,
        text=True,
        check=True,
    )
    report: RunReport = json.loads(completed.stdout)
    return report


def run_rounds(
    sample_sets: Sequence[Samples], contenders: Sequence[Contender], repeats: int
) -> Results:
    """Run every contender once per round and collect the measurements."""
    results: Results = {}
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    for samples in sample_sets:
        warm_page_cache(samples.files)
        for round_index in range(repeats):
            shift = round_index % len(contenders)
            for contender in [*contenders[shift:], *contenders[:shift]]:
                key = (samples.spec.name, contender.key, contender.workers)
                measurement = results.setdefault(key, Measurement())
                run_one(samples, contender, measurement)
            print(f"{samples.spec.name}: round {round_index + 1}/{repeats} done")
    return results


def run_one(samples: Samples, contender: Contender, measurement: Measurement) -> None:
    out_dir = Path(tempfile.mkdtemp(prefix="run-", dir=OUTPUT_ROOT))
    try:
        report = measure_once(contender.build_command(samples, out_dir))
        name = f"{contender.label} x{contender.workers} on {samples.spec.name}"
        if report["timed_out"] or report["returncode"] != 0:
            reason = "timed out" if report["timed_out"] else "failed"
            message = f"{name} {reason} (exit code {report['returncode']})"
            measurement.errors.append(f"{message}: {report['stderr']}")
            print(f"{message}:\n{report['stderr']}", file=sys.stderr)
            return
        expected = 3 * len(samples.files)
        written = count_jpegs(out_dir)
        if written != expected:
            measurement.warnings.add(f"wrote {written} JPEG files, expected {expected}")
        measurement.seconds.append(report["seconds"])
        measurement.max_rss_kb.append(report["max_rss_kb"])
        measurement.cpu_seconds.append(report["cpu_seconds"])
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}"


def format_number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def result_rows(
    results: Results, samples: Samples, contenders: Sequence[Contender]
) -> list[list[str]]:
    """Build one table row per contender: throughput, ratios and peak RSS."""
    count = len(samples.files)
    name = samples.spec.name
    rows = []
    for contender in contenders:
        measurement = results.get((name, contender.key, contender.workers))
        if measurement is None:
            continue
        throughput = measurement.images_per_second(count)
        ratios = []
        for reference_key in REFERENCE_KEYS:
            reference = results.get((name, reference_key, contender.workers))
            reference_throughput = (
                reference.images_per_second(count) if reference else None
            )
            ratios.append(ratio(throughput, reference_throughput))
        notes = sorted(measurement.warnings)
        if measurement.errors:
            notes.append(f"{len(measurement.errors)} failed runs")
        rows.append(
            [
                contender.label,
                str(contender.workers),
                *ratios,
                format_number(throughput),
                format_number(measurement.cpu_ms_per_image(count), 0),
                format_number(measurement.peak_rss_mb(), 0),
                "; ".join(notes),
            ]
        )
    return rows


TABLE_HEADER = [
    "contender",
    "workers",
    "vs ref_pyvips",
    "vs vipsthumbnail",
    "images/s",
    "CPU ms per image",
    "peak RSS per process (MB)",
    "notes",
]


def photo_count(samples: Samples) -> str:
    count = len(samples.files)
    return f"{count} photo{'' if count == 1 else 's'}"


def print_tables(
    results: Results, sample_sets: Sequence[Samples], contenders: Sequence[Contender]
) -> None:
    for samples in sample_sets:
        rows = [TABLE_HEADER, *result_rows(results, samples, contenders)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
        print(f"\n{samples.spec.name}, {photo_count(samples)}")
        for row in rows:
            cells = zip(row, widths, strict=True)
            print("  ".join(cell.ljust(width) for cell, width in cells))


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |"]
    lines.append("|" + "---|" * len(TABLE_HEADER))
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_lines(
    results: Results, sample_sets: Sequence[Samples], contenders: Sequence[Contender]
) -> list[str]:
    """Describe each imgflow row in one sentence of ratios, as a Markdown list."""
    lines = []
    for samples in sample_sets:
        count = len(samples.files)
        name = samples.spec.name
        for contender in contenders:
            if not contender.key.startswith("imgflow"):
                continue
            measurement = results.get((name, contender.key, contender.workers))
            throughput = measurement.images_per_second(count) if measurement else None
            if throughput is None:
                continue
            ratios = []
            for reference_key in REFERENCE_KEYS:
                reference = results.get((name, reference_key, contender.workers))
                if reference and (base := reference.images_per_second(count)):
                    ratios.append(f"{throughput / base:.2f}x {reference_key}")
            workers = f"{contender.workers} worker" + (
                "s" if contender.workers != 1 else ""
            )
            compared = " and ".join(ratios) or "no reference measured"
            lines.append(
                f"- {name}, `{contender.label}` with {workers}: {compared} "
                f"({throughput:.1f} images/s)."
            )
    return lines


def write_doc(
    results: Results,
    sample_sets: Sequence[Samples],
    contenders: Sequence[Contender],
    machine: dict[str, str],
    repeats: int,
    command: str,
) -> None:
    """Write docs/benchmarks.md from the measurements of this run."""
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    sections = []
    for samples in sample_sets:
        rows = result_rows(results, samples, contenders)
        sections.append(
            f"### {samples.spec.name} ({photo_count(samples)})\n\n"
            + markdown_table(rows)
        )
    rounds = f"{repeats} interleaved round{'s' if repeats != 1 else ''}"
    loads = [machine["load"], machine["load_after"]]
    busy = any(is_busy(load) for load in loads)
    load_note = BUSY_NOTE if busy else ""
    text = DOC_TEMPLATE.format(
        date=date,
        rounds=rounds,
        load_note=load_note,
        summary="\n".join(summary_lines(results, sample_sets, contenders)),
        command=command,
        tables="\n\n".join(sections),
        install_hint=INSTALL_HINT,
        **machine,
    )
    # Parts that other scripts wrote into the page stay after this one.
    previous = DOC_PATH.read_text() if DOC_PATH.is_file() else ""
    others = marked_sections(previous)
    if others:
        text = text.rstrip("\n") + "\n\n" + others
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)
    print(f"Wrote {DOC_PATH}")


DOC_TEMPLATE = """\
# Benchmarks

How fast imgflow's default job runs compared with what a libvips expert would
write by hand. This page is written by `benchmarks/run.py --write-doc`, so rerun
it rather than editing the numbers.

## The job

Each photo gets three JPEG variants of 2048, 1024 and 256 px on the long edge at
quality 85, with its EXIF orientation applied, and its EXIF block is read. The
inputs are made by `imgflow.samples` (seed 0): baseline JPEGs at quality 90, some
with EXIF Orientation 6, 8 or 3, a third with GPS tags.

Contenders, each with 1 and 2 worker processes:

- **imgflow**: `imgflow run SET --out DIR --mode parallel --workers N --quiet`, and
  `--mode sequential` for one worker.
- **ref_pyvips** (`benchmarks/ref_pyvips.py`): libvips `thumbnail` once to 2048 px,
  then 1024 px and 256 px derived from that result in memory, one libvips thread
  per worker process, EXIF read with Pillow.
- **vipsthumbnail** under GNU parallel: `parallel -j N vipsthumbnail FILE -s
  'SxS>'` for each file and size, so every variant decodes the file again. Each
  vipsthumbnail uses libvips' default thread count, and it reads no EXIF beyond
  the orientation.
- **ref_pillow** (`benchmarks/ref_pillow.py`): Pillow `draft`, then `thumbnail`
  with `reducing_gap=2.0` cascaded from 2048 px, `exif_transpose` on the 2048 px
  image.

## Summary

{summary}

## Results

Ratios are imgflow's (or the row's) throughput divided by the reference's at the
same worker count, so 1.00 is as fast and above 1 is faster. The one-worker
sequential row is compared with the one-worker references. Images/s are given only
as context, since they depend on the machine. Each value is the median of
{rounds}. Peak RSS per process is
`getrusage(RUSAGE_CHILDREN).ru_maxrss` taken in a wrapper process around each run:
the peak of the largest single process in the run's tree (a worker, the pool's
parent or, for vipsthumbnail, GNU parallel's Perl process). CPU ms per image is the
user plus system time of the whole tree from the same call, divided by the number
of photos. Other load on the machine disturbs it less than the wall time.

The start-up set is one 0.3 MP photo, so its run is almost all fixed cost: the
interpreter, the imports and, for a pool, starting the workers. Its images/s is
one over the run's wall time, and its ratios compare those fixed costs. A longer
run spreads the same cost over more photos.

{tables}

## Machine and versions

- Date: {date}
- CPU: {cpu}
- Memory: {memory}
- System: {system}, Python {python}
- libvips used by imgflow and ref_pyvips: {libvips}
- vipsthumbnail: {vipsthumbnail} (Debian's libvips-tools package, a libvips build
  separate from the pyvips one)
- GNU parallel: {parallel}
- Pillow: {pillow}
- imgflow: commit {imgflow_commit}
- One-minute load average before and after the run: {load} and {load_after}
{load_note}
## Reproduce

```
{command}
```

`make bench` runs the same script without writing this page. vipsthumbnail and GNU
parallel come from Debian's packages:

```
{install_hint}
```

Sample photos are cached under `build/bench-samples`, and `--quick` uses fewer
photos and rounds.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="use 8 photos of 12 MP, 40 of 0.3 MP and 3 rounds",
    )

    parser.add_argument(
        "--write-doc",
        action="store_true",
        help=f"write the results to {DOC_PATH.relative_to(REPO)}",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="rounds per sample set, whose median is reported (default 5, quick 3)",
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="comma-separated worker counts to measure (default 1,2)",
    )
    parser.add_argument(
        "--imgflow",
        type=Path,
        help="imgflow command to measure (default: the one beside this Python)",
    )

    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1:
        parser.error(f"--repeats must be 1 or more, got {args.repeats}")

    try:
        args.worker_counts = [int(text) for text in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers must be comma-separated integers, got {args.workers}")
    if any(count < 1 for count in args.worker_counts):
        parser.error(f"--workers must all be 1 or more, got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Lets imgflow.samples load from the work tree when the project is not installed.
    sys.path.insert(0, str(REPO / "src"))
    compile_bytecode(REPO / "src", REPO / "benchmarks")

    imgflow = find_imgflow(args.imgflow)
    if args.write_doc and imgflow is None:
        print("--write-doc needs a working imgflow command; nothing was measured.")
        return 1
    contenders = build_contenders(imgflow, args.worker_counts)
    machine = machine_description()
    if is_busy(machine["load"]):
        print(f"Warning: load average is {machine['load']}, so results may be noisy.")

    sample_sets = [prepare_samples(spec, args.quick) for spec in SAMPLE_SETS]
    results = run_rounds(sample_sets, contenders, args.repeats)
    machine["load_after"] = one_minute_load()
    print_tables(results, sample_sets, contenders)

    if args.write_doc:
        command = "python benchmarks/run.py --write-doc"
        if args.quick:
            command += " --quick"
        write_doc(results, sample_sets, contenders, machine, args.repeats, command)
    failed = any(measurement.errors for measurement in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
