"""Benchmark every execution model and the single-engine scripts on three workloads.

The job is the one run.py measures: three JPEG variants (2048, 1024 and 256 px,
quality 85) per photo, EXIF orientation applied, EXIF read. Workloads, made by
``imgflow.samples`` with fixed seeds and cached under ``build/bench-samples``:

- 12 MP: 24 photos of 12 MP;
- 0.3 MP: 200 photos of 0.3 MP, the set run.py uses;
- mix: 150 photos of 0.3 MP, 4 of 50 MP and 20 progressive JPEGs of 2 to 12 MP,
  in one folder in a seeded random order.

Contenders: ``imgflow run --mode sequential`` (one worker), ``--mode parallel``,
``pipelined``, ``hybrid`` and ``auto`` with ``--workers 2``, and the
single-engine scripts ref_pyvips.py and ref_pillow.py with ``--workers 2``.

Each run starts a fresh wrapper process, which starts the contender and samples
the summed RSS of its process tree with ``imgflow.measure.TreeSampler``. CPU
time is the user plus system time of the reaped tree, from ``os.times()`` in
the wrapper, which counts a process only once its parent has waited for it,
hence a fresh wrapper per run. Per image, the processing time is
``images[].seconds`` of imgflow's ``--report`` and the scripts' ``--timings``,
and the time to result is their ``images[].finished_seconds``, the seconds
from the start of the run to the image's result. Rounds are interleaved
(every contender once per round, the first one rotating) and medians of the
rounds are reported. The script then runs hybrid_threshold.py's measurement.

imgflow runs from a copy of one commit (HEAD unless ``--rev`` names another),
exported with ``git archive`` into ``build/bench-imgflow``, so that edits in
the work tree during a long run do not change what is measured.
``--worktree`` measures ``src/`` as it is instead.

Usage: python benchmarks/models.py [--quick] [--write-doc] [--repeats N]
       [--rev REV | --worktree] [--skip-threshold]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import hybrid_threshold
import models_doc
from common import (
    REPO,
    SAMPLE_CACHE,
    compile_bytecode,
    count_jpegs,
    generate_cached,
    is_busy,
    machine_description,
    one_minute_load,
    warm_page_cache,
)

OUTPUT_ROOT = REPO / "build" / "bench-out"
SNAPSHOT_ROOT = REPO / "build" / "bench-imgflow"
SCRIPTS_DIR = Path(__file__).resolve().parent
RUN_TIMEOUT_SECONDS = 900
VARIANTS_PER_IMAGE = 3
MIX_ORDER_SEED = 0

# Runs one command and prints, as JSON, its wall time, the CPU time of its
# reaped process tree and the peak of the tree's summed RSS. It also prints
# the shares of the machine's CPU time that the hypervisor stole and that
# processes outside the tree and this wrapper used meanwhile. It runs in a
# fresh process per measurement, because os.times() counts every child that
# a process has ever waited for. TreeSampler's own CPU figure also counts
# this wrapper and its sampling thread, so the wrapper reads os.times() itself.
WRAPPER_CODE = """
import json, os, signal, subprocess, sys, time
from imgflow.measure import TreeSampler

def machine_times():
    # The machine's total, steal and idle (with iowait) CPU time, in ticks
    # (Linux only). Steal is time the hypervisor gave this machine's virtual
    # cores to others.
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), fields[7], fields[3] + fields[4]

timeout = float(sys.argv[1])
machine_before = machine_times()
before = os.times()
started = time.perf_counter()
child = subprocess.Popen(
    sys.argv[2:],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    start_new_session=True,
)
sampler = TreeSampler(child.pid)
sampler.start()
try:
    _, stderr = child.communicate(timeout=timeout)
    timed_out = False
except subprocess.TimeoutExpired:
    os.killpg(child.pid, signal.SIGKILL)
    _, stderr = child.communicate()
    timed_out = True
seconds = time.perf_counter() - started
usage = sampler.stop()
after = os.times()
machine_after = machine_times()
tree_cpu = (
    after.children_user - before.children_user
    + after.children_system - before.children_system
)
own_cpu = after.user - before.user + after.system - before.system
steal_share = other_share = None
if machine_before and machine_after and machine_after[0] > machine_before[0]:
    total, steal, idle = (a - b for a, b in zip(machine_after, machine_before))
    steal_share = steal / total
    busy_seconds = (total - steal - idle) / os.sysconf("SC_CLK_TCK")
    other_share = max(0.0, busy_seconds - tree_cpu - own_cpu) / (
        total / os.sysconf("SC_CLK_TCK")
    )
print(json.dumps({
    "returncode": child.returncode,
    "timed_out": timed_out,
    "seconds": seconds,
    "cpu_seconds": tree_cpu,
    "peak_rss_bytes": usage.peak_rss_bytes,
    "cores": usage.cores,
    "steal_share": steal_share,
    "other_share": other_share,
    "stderr": stderr.decode(errors="replace")[-2000:],
}))
"""


class WrapperReport(TypedDict):
    returncode: int
    timed_out: bool
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    cores: int
    steal_share: float | None
    other_share: float | None
    stderr: str


@dataclass(frozen=True)
class Part:
    """One sample set inside a workload."""

    label: str
    megapixels: float
    count: int
    quick_count: int
    seed: int
    progressive: bool = False


@dataclass(frozen=True)
class Workload:
    name: str
    parts: tuple[Part, ...]
    # Label of the part whose latency is also reported on its own.
    small_label: str | None = None


SMALL = Part("small", 0.3, 150, 30, seed=1)
WORKLOADS = (
    Workload("12 MP", (Part("photo", 12.0, 24, 8, seed=0),)),
    Workload("0.3 MP", (Part("photo", 0.3, 200, 40, seed=0),)),
    Workload(
        "mix",
        (
            SMALL,
            Part("large", 50.0, 4, 1, seed=1),
            *(
                Part(f"progressive{mp:g}mp", mp, 4, 1, seed=1, progressive=True)
                for mp in (2.0, 4.0, 6.0, 9.0, 12.0)
            ),
        ),
        small_label=SMALL.label,
    ),
)


@dataclass(frozen=True)
class Prepared:
    """A workload's files on disk, ready to run."""

    workload: Workload
    directory: Path
    files: tuple[Path, ...]
    # File names of the images in the workload's small part.
    small_names: frozenset[str]

    @property
    def name(self) -> str:
        return self.workload.name


def prepare(workload: Workload, quick: bool) -> Prepared:
    """Generate a workload's photos, or take them from the cache."""
    if len(workload.parts) == 1:
        part = workload.parts[0]
        count = part.quick_count if quick else part.count
        directory, files = generate_cached(
            part.megapixels, count, seed=part.seed, progressive=part.progressive
        )
        return Prepared(workload, directory, files, frozenset())
    return prepare_mix(workload, quick)


def prepare_mix(workload: Workload, quick: bool) -> Prepared:
    """Link every part's photos into one folder, in a seeded random order.

    The order decides when the large photos arrive, so it is fixed: names
    start with the position, then the part's label (``0007-large-IMG_0002.jpg``).
    """
    members: list[tuple[str, Path]] = []
    for part in workload.parts:
        count = part.quick_count if quick else part.count
        _, files = generate_cached(
            part.megapixels, count, seed=part.seed, progressive=part.progressive
        )
        members += [(part.label, path) for path in files]
    random.Random(MIX_ORDER_SEED).shuffle(members)

    directory = SAMPLE_CACHE / f"mix-{'quick' if quick else 'full'}"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    files = []
    small_names = set()
    for position, (label, source) in enumerate(members, start=1):
        target = directory / f"{position:04d}-{label}-{source.name}"
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        files.append(target)
        if label == workload.small_label:
            small_names.add(target.name)
    return Prepared(workload, directory, tuple(files), frozenset(small_names))


CommandBuilder = Callable[[Prepared, Path, Path], list[str]]


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    build_command: CommandBuilder
    is_imgflow: bool


def build_contenders(workers: int) -> list[Contender]:
    contenders = [
        Contender(
            "sequential",
            "imgflow --mode sequential",
            imgflow_command("sequential", None),
            True,
        )
    ]
    for mode in ("parallel", "pipelined", "hybrid", "auto"):
        contenders.append(
            Contender(
                mode, f"imgflow --mode {mode}", imgflow_command(mode, workers), True
            )
        )
    for script in ("ref_pyvips", "ref_pillow"):
        contenders.append(
            Contender(script, f"{script}.py", script_command(script, workers), False)
        )
    return contenders


def imgflow_command(mode: str, workers: int | None) -> CommandBuilder:
    def build(prepared: Prepared, out_dir: Path, report: Path) -> list[str]:
        command = [sys.executable, "-m", "imgflow", "run", str(prepared.directory)]
        command += ["--out", str(out_dir), "--mode", mode]
        if workers is not None:
            command += ["--workers", str(workers)]
        return [*command, "--report", str(report), "--quiet"]

    return build


def script_command(script: str, workers: int) -> CommandBuilder:
    def build(prepared: Prepared, out_dir: Path, report: Path) -> list[str]:
        command = [sys.executable, str(SCRIPTS_DIR / f"{script}.py")]
        command += ["--out", str(out_dir), "--workers", str(workers)]
        command += ["--timings", str(report)]
        return command + [str(path) for path in prepared.files]

    return build


@dataclass
class Run:
    """One measured run of one contender on one workload."""

    wall_seconds: float
    cpu_seconds: float
    cores: int
    peak_rss_bytes: int
    # Share of the machine's CPU time that the hypervisor stole during the run.
    steal_share: float | None
    # Share of the machine's CPU time used by processes outside the run.
    other_share: float | None
    # File name to seconds: the image's processing time as the report gives it.
    processing: dict[str, float]
    # File name to seconds from the start of the run to the image's result.
    finished: dict[str, float]
    # File name to seconds spent in imgflow's stages (imgflow reports only).
    stage_seconds: dict[str, float]
    # File name to the engine that rendered it (imgflow reports only).
    engines: dict[str, str]
    mode: str | None
    # Position of the round, for comparing contenders within one round.
    round_index: int = 0


@dataclass
class Measurement:
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: set[str] = field(default_factory=set)

    def median_of(self, value: Callable[[Run], float | None]) -> float | None:
        values = [v for v in map(value, self.runs) if v is not None]
        return statistics.median(values) if values else None

    def images_per_second(self, count: int) -> float | None:
        wall = self.median_of(lambda run: run.wall_seconds)
        return count / wall if wall else None

    def wall_spread(self) -> float | None:
        """Return the range of the wall times over their median, from 0 up."""
        walls = [run.wall_seconds for run in self.runs]
        if len(walls) < 2:
            return None
        return (max(walls) - min(walls)) / statistics.median(walls)

    def latency(
        self,
        quantile: float,
        names: frozenset[str] | None = None,
        source: str = "processing",
    ) -> float | None:
        """Return the median over runs of a per-image percentile, in seconds.

        ``names`` keeps only those images. ``source`` names the Run field:
        ``processing``, ``finished`` (time to result) or ``stage_seconds``
        (the time inside imgflow's stages).
        """
        from imgflow.stats import percentile

        def one_run(run: Run) -> float | None:
            values = getattr(run, source)
            if names is not None:
                values = {k: v for k, v in values.items() if k in names}
            return percentile(values.values(), quantile)

        return self.median_of(one_run)

    def cpu_utilisation(self) -> float | None:
        return self.median_of(
            lambda run: run.cpu_seconds / (run.wall_seconds * run.cores)
        )

    def cpu_ms_per_image(self, count: int) -> float | None:
        cpu = self.median_of(lambda run: run.cpu_seconds)
        return None if cpu is None else 1000 * cpu / count

    def peak_rss_mb(self) -> float | None:
        peak = self.median_of(lambda run: run.peak_rss_bytes)
        return None if peak is None else peak / 2**20

    def by_round(self) -> dict[int, Run]:
        return {run.round_index: run for run in self.runs}

    def modes(self) -> list[str]:
        return sorted({run.mode for run in self.runs if run.mode})


Results = dict[tuple[str, str], Measurement]


def export_snapshot(rev: str) -> tuple[Path, str]:
    """Export ``src/`` at ``rev`` once; return its folder and the short commit."""
    commit = git_output("rev-parse", "--verify", f"{rev}^{{commit}}")
    short = git_output("rev-parse", "--short", commit)
    target = SNAPSHOT_ROOT / commit
    if not (target / "src" / "imgflow" / "__init__.py").is_file():
        print(f"Exporting src/ at {short} to {target} ...")
        partial = target.with_name(f"{commit}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        partial.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit, "src"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(partial, filter="data")
        partial.rename(target)
    return target / "src", short


def git_output(*args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def measure_once(command: list[str], env: dict[str, str]) -> WrapperReport:
    completed = subprocess.run(
        [sys.executable, "-c", WRAPPER_CODE, str(RUN_TIMEOUT_SECONDS), *command],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    report: WrapperReport = json.loads(completed.stdout)
    return report


def run_rounds(
    prepared_sets: Sequence[Prepared],
    contenders: Sequence[Contender],
    repeats: int,
    env: dict[str, str],
    loads: list[float],
) -> Results:
    """Run every contender once per round and collect the measurements.

    Appends the one-minute load average at the start of each round to ``loads``.
    """
    results: Results = {}
    OUTPUT_ROOT.mkdir(parents=True, exist_ok=True)
    for prepared in prepared_sets:
        warm_page_cache(prepared.files)
        for round_index in range(repeats):
            load = one_minute_load()
            if load != "unknown":
                loads.append(float(load))
            shift = round_index % len(contenders)
            for contender in [*contenders[shift:], *contenders[:shift]]:
                measurement = results.setdefault(
                    (prepared.name, contender.key), Measurement()
                )
                run_one(prepared, contender, measurement, env, round_index)
            print(f"{prepared.name}: round {round_index + 1}/{repeats} done")
    return results


def run_one(
    prepared: Prepared,
    contender: Contender,
    measurement: Measurement,
    env: dict[str, str],
    round_index: int,
) -> None:
    """Measure one run, check its output, and add it to ``measurement``."""
    work_dir = Path(tempfile.mkdtemp(prefix="models-", dir=OUTPUT_ROOT))
    out_dir = work_dir / "out"
    report_path = work_dir / "report.json"
    name = f"{contender.label} on {prepared.name}"
    try:
        report = measure_once(
            contender.build_command(prepared, out_dir, report_path), env
        )
        if report["timed_out"] or report["returncode"] != 0:
            reason = "timed out" if report["timed_out"] else "failed"
            message = f"{name} {reason} (exit code {report['returncode']})"
            measurement.errors.append(f"{message}: {report['stderr']}")
            print(f"{message}:\n{report['stderr']}", file=sys.stderr)
            return
        if not report_path.is_file():
            message = f"{name} wrote no report to {report_path}"
            measurement.errors.append(message)
            print(message, file=sys.stderr)
            return
        expected = VARIANTS_PER_IMAGE * len(prepared.files)
        written = count_jpegs(out_dir)
        if written != expected:
            measurement.warnings.add(f"wrote {written} JPEG files, expected {expected}")
        run = read_run(report, report_path, prepared, measurement)
        run.round_index = round_index
        measurement.runs.append(run)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def read_run(
    report: WrapperReport,
    report_path: Path,
    prepared: Prepared,
    measurement: Measurement,
) -> Run:
    """Build a Run from the wrapper's figures and the contender's report."""
    data = json.loads(report_path.read_text())
    processing: dict[str, float] = {}
    finished: dict[str, float] = {}
    stage_seconds: dict[str, float] = {}
    engines: dict[str, str] = {}
    not_done = 0
    for image in data["images"]:
        file_name = Path(image["source"]).name
        processing[file_name] = float(image["seconds"])
        if image.get("finished_seconds") is not None:
            finished[file_name] = float(image["finished_seconds"])
        if "stage_seconds" in image:
            stage_seconds[file_name] = sum(image["stage_seconds"].values())
        if image.get("engine"):
            engines[file_name] = image["engine"]
        if image.get("status", "done") != "done":
            not_done += 1
    if not_done:
        measurement.warnings.add(f"{not_done} images not done")
    if len(processing) != len(prepared.files):
        measurement.warnings.add(
            f"reported {len(processing)} images, expected {len(prepared.files)}"
        )
    if len(finished) != len(processing):
        measurement.warnings.add(
            f"reported a time to result for {len(finished)} of {len(processing)} images"
        )
    summary = data.get("summary", {})
    return Run(
        wall_seconds=report["seconds"],
        cpu_seconds=report["cpu_seconds"],
        cores=report["cores"],
        peak_rss_bytes=report["peak_rss_bytes"],
        steal_share=report["steal_share"],
        other_share=report["other_share"],
        processing=processing,
        finished=finished,
        stage_seconds=stage_seconds,
        engines=engines,
        mode=summary.get("mode"),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="use fewer photos per workload, 2 rounds and a shorter threshold run",
    )
    parser.add_argument(
        "--write-doc",
        action="store_true",
        help="write the results into their part of docs/benchmarks.md",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="rounds per workload, whose median is reported (default 7, quick 2)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of every contender except sequential (default 2)",
    )

    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--rev",
        default="HEAD",
        help="git revision of imgflow to measure (default HEAD)",
    )
    source.add_argument(
        "--worktree",
        action="store_true",
        help="measure src/ as it is in the work tree, uncommitted edits included",
    )
    parser.add_argument(
        "--skip-threshold",
        action="store_true",
        help="skip the Pillow against libvips threshold measurement",
    )

    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 7
    if args.repeats < 1:
        parser.error(f"--repeats must be 1 or more, got {args.repeats}")
    if args.workers < 1:
        parser.error(f"--workers must be 1 or more, got {args.workers}")
    if args.write_doc and args.skip_threshold:
        parser.error(
            "--write-doc needs the threshold measurement; drop --skip-threshold"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worktree:
        src = REPO / "src"
        commit = git_output("describe", "--always", "--dirty")
    else:
        src, commit = export_snapshot(args.rev)
    compile_bytecode(src, REPO / "benchmarks")
    # The samples, the statistics and the threshold run use the measured imgflow.
    sys.path.insert(0, str(src))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(src), os.environ.get("PYTHONPATH")])
    )

    machine = machine_description()
    machine["imgflow_commit"] = commit
    if is_busy(machine["load"]):
        print(f"Warning: load average is {machine['load']}, so results may be noisy.")

    prepared_sets = [prepare(workload, args.quick) for workload in WORKLOADS]
    contenders = build_contenders(args.workers)
    loads: list[float] = []
    results = run_rounds(prepared_sets, contenders, args.repeats, env, loads)
    threshold = None if args.skip_threshold else hybrid_threshold.measure(args.quick)
    machine["load_after"] = one_minute_load()

    report = models_doc.Report(
        prepared_sets, contenders, results, threshold, machine, loads, args
    )
    print(report.console_text())
    if threshold is not None:
        hybrid_threshold.print_table(threshold)
    if args.write_doc:
        report.write_doc()
    failed = any(measurement.errors for measurement in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
