"""Tables, target verdicts and the docs/benchmarks.md part for models.py."""

from __future__ import annotations

import argparse
import statistics
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import hybrid_threshold
from common import DOC_PATH, is_busy, replace_section

if TYPE_CHECKING:
    from models import Contender, Measurement, Part, Prepared, Results, Run

DOC_OWNER = "benchmarks/models.py"
# The workload made of the mix's small photos alone.
UNIFORM_SMALL = "0.3 MP"
# Engines within this share of each other count as even in the threshold text.
EVEN_MARGIN = 0.05


def milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = 1000 * seconds
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def join_words(items: Sequence[str]) -> str:
    """Join items as a list in prose: ``a``, ``a and b``, ``a, b and c``."""
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def wrap_markdown(text: str, width: int = 80) -> str:
    """Refill paragraphs and list items to ``width`` columns.

    Tables, headings, HTML comments and fenced code stay as they are. A list
    item starts with ``- `` and its wrapped lines are indented by two spaces.
    """
    lines: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if not block:
            return
        indent = "  " if block[0].startswith("- ") else ""
        joined = " ".join(line.strip() for line in block)
        lines.append(
            textwrap.fill(
                joined,
                width,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
        block.clear()

    in_code = False
    for line in text.splitlines():
        verbatim = line.startswith(("|", "#", "<!--")) or not line.strip()
        if line.startswith("```") or in_code or verbatim:
            flush()
            lines.append(line)
            if line.startswith("```"):
                in_code = not in_code
            continue
        if line.startswith("- "):
            flush()
        block.append(line)
    flush()
    return "\n".join(lines) + "\n"


def percentile_of(
    values: dict[str, float], quantile: float, names: frozenset[str]
) -> float | None:
    """Return a percentile of the values whose names are in ``names``."""
    from imgflow.stats import percentile

    return percentile((v for k, v in values.items() if k in names), quantile)


def markdown_table(rows: list[list[str]]) -> str:
    header, *body = rows
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def aligned(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    )


def describe_parts(parts: Sequence[Part], quick: bool) -> str:
    """Describe a workload's photos, grouping parts that differ only in size."""
    groups: list[tuple[int, bool, int, list[float]]] = []
    for part in parts:
        count = part.quick_count if quick else part.count
        if groups and groups[-1][:3] == (count, part.progressive, part.seed):
            groups[-1][3].append(part.megapixels)
        else:
            groups.append((count, part.progressive, part.seed, [part.megapixels]))
    phrases = []
    for count, progressive, seed, sizes in groups:
        kind = "progressive" if progressive else "baseline"
        photos = plural(count, f"{kind} photo")
        each_word = " each" if len(sizes) > 1 else ""
        listed = join_words([f"{size:g}" for size in sizes])
        phrases.append(f"{photos}{each_word} of {listed} MP (seed {seed})")
    return join_words(phrases)


@dataclass
class Report:
    """Everything one run of models.py measured, ready to print or write."""

    prepared_sets: Sequence[Prepared]
    contenders: Sequence[Contender]
    results: Results
    threshold: hybrid_threshold.Threshold | None
    machine: dict[str, str]
    loads: list[float]
    args: argparse.Namespace

    def get(self, workload: str, key: str) -> Measurement | None:
        return self.results.get((workload, key))

    def mix(self) -> Prepared | None:
        for prepared in self.prepared_sets:
            if prepared.workload.small_label is not None:
                return prepared
        return None

    def throughput(self, prepared: Prepared, key: str) -> float | None:
        measurement = self.get(prepared.name, key)
        if measurement is None:
            return None
        return measurement.images_per_second(len(prepared.files))

    def label(self, key: str) -> str:
        return next(c.label for c in self.contenders if c.key == key)

    # Tables

    def header(self, prepared: Prepared) -> list[str]:
        columns = ["contender", "mode run", "images/s", "spread"]
        columns += ["p50 ms", "p95 ms", "p99 ms"]
        if prepared.small_names:
            columns += ["small p50 ms", "small p95 ms"]
        columns += ["peak tree RSS (MB)", "CPU use", "CPU ms per image", "notes"]
        return columns

    def rows(self, prepared: Prepared) -> list[list[str]]:
        """Build one table row per contender for one workload."""
        count = len(prepared.files)
        rows = []
        for contender in self.contenders:
            measurement = self.get(prepared.name, contender.key)
            if measurement is None:
                continue
            row = [
                contender.label,
                ", ".join(measurement.modes()) or "-",
                number(measurement.images_per_second(count)),
                percent(measurement.wall_spread()),
                *(milliseconds(measurement.latency(q)) for q in (0.5, 0.95, 0.99)),
            ]
            if prepared.small_names:
                small = prepared.small_names
                row += [
                    milliseconds(measurement.latency(0.5, small)),
                    milliseconds(measurement.latency(0.95, small)),
                ]
            notes = sorted(measurement.warnings)
            if measurement.errors:
                notes.append(f"{len(measurement.errors)} failed runs")
            row += [
                number(measurement.peak_rss_mb(), 0),
                percent(measurement.cpu_utilisation()),
                number(measurement.cpu_ms_per_image(count), 0),
                "; ".join(notes),
            ]
            rows.append(row)
        return rows

    def title(self, prepared: Prepared) -> str:
        count = len(prepared.files)
        if prepared.small_names:
            small = len(prepared.small_names)
            return f"{prepared.name}, {count} photos, {small} of them small"
        return f"{prepared.name}, {count} photos"

    def console_text(self) -> str:
        blocks = []
        for prepared in self.prepared_sets:
            rows = [self.header(prepared), *self.rows(prepared)]
            blocks += ["", self.title(prepared), aligned(rows)]
        return "\n".join([*blocks, "", self.verdicts()])

    # Targets

    def verdicts(self) -> str:
        mix = self.mix()
        if mix is None:
            return ""
        latency_table = markdown_table(self.small_latency_rows(mix))
        parts = [
            self.throughput_verdict(mix),
            self.latency_verdict(mix),
            latency_table,
        ]
        return "\n\n".join(parts)

    def throughput_verdict(self, mix: Prepared) -> str:
        """Build the verdict on whether hybrid has the highest throughput on the mix."""
        question = (
            "**On the mix, does hybrid beat every single-engine script and every "
            "other model in throughput?**"
        )
        hybrid = self.throughput(mix, "hybrid")
        ranked = sorted(
            (
                (value, contender.key)
                for contender in self.contenders
                if (value := self.throughput(mix, contender.key)) is not None
            ),
            reverse=True,
        )
        if hybrid is None or len(ranked) < 2:
            return f"{question} Not measured: the hybrid runs or all others failed."

        best_value, best = next((v, k) for v, k in ranked if k != "hybrid")
        faster = sum(1 for v, k in ranked if k != "hybrid" and v >= hybrid)
        if faster:
            answer = f"No: {faster} of the {len(ranked) - 1} others are faster."
            notes = [self.gap_reason(mix, best)]
        else:
            answer = (
                f"Yes: hybrid runs {hybrid:.1f} images/s, "
                f"{hybrid / best_value - 1:.0%} more than the next, {self.label(best)}."
            )
            notes = []

        listing = ", ".join(f"{self.label(key)} {value:.1f}" for value, key in ranked)
        notes = [f"Images/s, fastest first: {listing}.", *notes]
        notes.append(self.rounds_won_note(mix, [k for v, k in ranked if k != "hybrid"]))
        notes += [self.auto_note(mix), self.large_lane_note(mix)]
        bullets = "\n".join(f"- {note}" for note in notes if note)
        return f"{question} {answer}\n\n{bullets}"

    def gap_reason(self, mix: Prepared, key: str) -> str:
        """Compare hybrid with a faster contender by throughput and CPU use."""
        count = len(mix.files)
        hybrid = self.get(mix.name, "hybrid")
        other = self.get(mix.name, key)
        assert hybrid is not None and other is not None
        hybrid_speed = hybrid.images_per_second(count) or 0.0
        other_speed = other.images_per_second(count) or 0.0
        text = (
            f"The fastest, {self.label(key)}, runs {other_speed:.1f} images/s, "
            f"{other_speed / hybrid_speed - 1:+.0%} on hybrid's {hybrid_speed:.1f}."
        )
        hybrid_use, other_use = hybrid.cpu_utilisation(), other.cpu_utilisation()
        hybrid_cpu = hybrid.cpu_ms_per_image(count)
        other_cpu = other.cpu_ms_per_image(count)
        if None in (hybrid_use, other_use, hybrid_cpu, other_cpu):
            return text
        return text + (
            f" It spends {other_cpu:.0f} CPU ms per image where hybrid spends "
            f"{hybrid_cpu:.0f}, and keeps {percent(other_use)} of the cores busy "
            f"where hybrid keeps {percent(hybrid_use)}."
        )

    def rounds_won(
        self, workload: str, key: str, rival: str, value: Callable[[Run], float | None]
    ) -> tuple[int, int]:
        """Count the rounds where ``key`` had a lower value than ``rival``."""
        mine, theirs = self.get(workload, key), self.get(workload, rival)
        if mine is None or theirs is None:
            return 0, 0
        pairs = [
            (value(run), value(other))
            for index, run in mine.by_round().items()
            if (other := theirs.by_round().get(index)) is not None
        ]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        return sum(1 for a, b in pairs if a < b), len(pairs)

    def rounds_won_note(self, mix: Prepared, keys: Sequence[str]) -> str:
        counts = []
        for key in keys:
            won, total = self.rounds_won(
                mix.name, key, "hybrid", lambda run: run.wall_seconds
            )
            if total:
                counts.append(f"{self.label(key)} {won} of {total}")
        if not counts:
            return ""
        return (
            "Rounds interleave the contenders, so each round compares them under "
            "the same load. Rounds in which each one finished the mix before "
            f"hybrid: {', '.join(counts)}."
        )

    def auto_note(self, mix: Prepared) -> str:
        auto = self.get(mix.name, "auto")
        if auto is None or auto.modes() != ["hybrid"]:
            return ""
        hybrid = self.throughput(mix, "hybrid")
        auto_speed = self.throughput(mix, "auto")
        if not hybrid or not auto_speed:
            return ""
        return (
            "Auto chose hybrid in every run, so it ran the same model after "
            "reading a sample of headers; the gap between the two rows "
            f"({auto_speed / hybrid - 1:+.0%}) gives an idea of the run-to-run noise."
        )

    def large_lane_note(self, mix: Prepared) -> str:
        """Describe the work of hybrid's libvips lane, from the reports' engines."""
        from imgflow.executors.hybrid import HybridExecutor

        hybrid = self.get(mix.name, "hybrid")
        if hybrid is None or not hybrid.runs:
            return ""
        lane_workers = HybridExecutor(self.args.workers).large_workers
        busy_seconds = []
        images = 0
        for run in hybrid.runs:
            on_vips = [name for name, engine in run.engines.items() if engine == "vips"]
            images = len(on_vips)
            busy_seconds.append(sum(run.latencies[name] for name in on_vips))
        wall = statistics.median(run.wall_seconds for run in hybrid.runs)
        return (
            f"With `--workers {self.args.workers}`, hybrid runs "
            f"{plural(self.args.workers, 'Pillow worker')} and a libvips lane of "
            f"{plural(lane_workers, 'worker')}. The lane rendered the "
            f"{images} photos that the report lists with engine `vips`; their "
            f"processing times add up to {statistics.median(busy_seconds):.1f} s per "
            f"run (median), against {wall:.1f} s for the whole run."
        )

    def latency_verdict(self, mix: Prepared) -> str:
        """Build the verdict on whether pipelined or hybrid lower the small p95."""
        small = mix.small_names
        question = (
            "**Do pipelined or hybrid give the small photos of the mix a lower p95 "
            "latency than parallel?**"
        )
        parallel = self.get(mix.name, "parallel")
        base = parallel.latency(0.95, small) if parallel else None
        if base is None:
            return f"{question} Not measured: the parallel runs failed."
        notes = []
        for key in ("pipelined", "hybrid"):
            measurement = self.get(mix.name, key)
            value = measurement.latency(0.95, small) if measurement else None
            if measurement is None or value is None:
                notes.append(f"{key}: not measured.")
                continue
            verdict = "yes" if value < base else "no"
            won, total = self.rounds_won(
                mix.name,
                key,
                "parallel",
                lambda run: percentile_of(run.latencies, 0.95, small),
            )
            notes.append(
                f"{key}: {verdict}, {milliseconds(value)} ms against parallel's "
                f"{milliseconds(base)} ms, lower in {won} of {total} rounds. "
                + self.latency_reason(mix, key)
            )
        bullets = "\n".join(f"- {note}" for note in notes)
        return (
            f"{question}\n\n{bullets}\n\nThe table splits each p95 into the time "
            "inside imgflow's stages and the rest, and gives the same contender's "
            f"p95 on the {UNIFORM_SMALL} workload, where no large photo shares the "
            "cores."
        )

    def latency_reason(self, mix: Prepared, key: str) -> str:
        """Return the figures behind one model's small p95: stages and 0.3 MP alone."""
        small = mix.small_names
        measurement = self.get(mix.name, key)
        parallel = self.get(mix.name, "parallel")
        assert measurement is not None and parallel is not None
        total = measurement.latency(0.95, small)
        inside = measurement.latency(0.95, small, "stage_seconds")
        sentences = []
        if total and inside is not None and inside < 0.5 * total:
            sentences.append(
                f"Inside the stages its p95 is {milliseconds(inside)} ms; the rest "
                "is time queued between the stages, which its latency counts."
            )
        alone = self.get(UNIFORM_SMALL, key)
        parallel_alone = self.get(UNIFORM_SMALL, "parallel")
        if alone and parallel_alone:
            value = alone.latency(0.95)
            base = parallel_alone.latency(0.95)
            if value is not None and base is not None:
                sentences.append(
                    f"On the {UNIFORM_SMALL} workload alone its p95 is "
                    f"{milliseconds(value)} ms against parallel's "
                    f"{milliseconds(base)} ms."
                )
            if key == "hybrid" and value is not None and base is not None:
                if value < base and total is not None and total >= self.small_p95(mix):
                    sentences.append(self.shared_cores_note(measurement))
        return " ".join(sentences)

    def small_p95(self, mix: Prepared) -> float:
        parallel = self.get(mix.name, "parallel")
        assert parallel is not None
        return parallel.latency(0.95, mix.small_names) or 0.0

    def shared_cores_note(self, hybrid: Measurement) -> str:
        from imgflow.executors.hybrid import HybridExecutor

        workers = self.args.workers
        processes = workers + HybridExecutor(workers).large_workers
        cores = hybrid.runs[0].cores
        return (
            "So its small photos are faster on their own and slower beside the "
            f"large ones. In the mix, its {processes} worker processes share "
            f"{cores} cores, where parallel runs {plural(workers, 'worker')}."
        )

    def small_latency_rows(self, mix: Prepared) -> list[list[str]]:
        rows = [
            [
                "small photos of the mix",
                "p95 ms",
                "p95 inside the stages ms",
                f"p95 on the {UNIFORM_SMALL} workload ms",
            ]
        ]
        for contender in self.contenders:
            measurement = self.get(mix.name, contender.key)
            if measurement is None:
                continue
            inside = None
            if contender.is_imgflow:
                inside = measurement.latency(0.95, mix.small_names, "stage_seconds")
            uniform = self.get(UNIFORM_SMALL, contender.key)
            rows.append(
                [
                    contender.label,
                    milliseconds(measurement.latency(0.95, mix.small_names)),
                    milliseconds(inside),
                    milliseconds(uniform.latency(0.95) if uniform else None),
                ]
            )
        return rows

    # The page

    def workloads_text(self) -> str:
        lines = []
        for prepared in self.prepared_sets:
            parts = describe_parts(prepared.workload.parts, self.args.quick)
            line = f"- **{prepared.name}**: {parts}"
            if prepared.small_names:
                line += (
                    ". They are linked into one folder in a seeded random order, "
                    f"and the {len(prepared.small_names)} photos of the first group "
                    "are the small ones"
                )
            lines.append(line + ".")
        return "\n".join(lines)

    def hybrid_lanes_text(self) -> str:
        from imgflow.executors.hybrid import HybridExecutor

        workers = self.args.workers
        lane = HybridExecutor(workers).large_workers
        return (
            f"Hybrid runs {plural(workers, 'Pillow worker')} plus a libvips lane "
            f"of {plural(lane, 'worker')}, so it starts {workers + lane} worker "
            f"processes where parallel and pipelined start {workers}."
        )

    def threshold_text(self) -> str:
        threshold = self.threshold
        if threshold is None:
            return "Not measured in this run.\n"
        rows = [hybrid_threshold.TABLE_HEADER, *hybrid_threshold.table_rows(threshold)]
        core = ""
        if threshold.cpu_core is not None:
            core = f" pinned to core {threshold.cpu_core}"
        return THRESHOLD_TEMPLATE.format(
            photos=threshold.photos,
            rotated=hybrid_threshold.describe_orientations(threshold.photos),
            rounds=threshold.rounds,
            core=core,
            table=markdown_table(rows),
            cpu=hybrid_threshold.describe_crossover(threshold, "cpu"),
            wall=hybrid_threshold.describe_crossover(threshold, "wall"),
            even=self.even_text(threshold),
            compared=self.default_compared(threshold),
        )

    def even_text(self, threshold: hybrid_threshold.Threshold) -> str:
        even = [
            point
            for point in threshold.points
            if abs(point.ratio("cpu") - 1) <= EVEN_MARGIN
        ]
        if not even:
            return ""
        sizes = join_words([f"{point.megapixels:g}" for point in even])
        return (
            f"\nBy CPU time the engines are within {EVEN_MARGIN:.0%} of each other "
            f"at {sizes} MP, so the exact crossover there is within the noise.\n"
        )

    def default_compared(self, threshold: hybrid_threshold.Threshold) -> str:
        from imgflow.executors.hybrid import DEFAULT_SMALL_PIXELS

        crossover = threshold.crossover_mp("cpu")
        if crossover is None:
            return ""
        setting = (
            f"`DEFAULT_SMALL_PIXELS` in `imgflow/executors/hybrid.py` is "
            f"{DEFAULT_SMALL_PIXELS:,} at the measured commit"
        )
        if crossover * 1e6 < DEFAULT_SMALL_PIXELS:
            return (
                f"\n{setting}, above the crossover, so hybrid sends photos to "
                "Pillow in a range where libvips renders them faster.\n"
            )
        return f"\n{setting}, at or below the crossover.\n"

    def steal_text(self) -> str:
        """Describe the share of CPU time the hypervisor took during the runs."""
        shares = [
            run.steal_share
            for measurement in self.results.values()
            for run in measurement.runs
            if run.steal_share is not None
        ]
        if not shares:
            return "not measured"
        return (
            f"median {percent(statistics.median(shares))}, from "
            f"{percent(min(shares))} to {percent(max(shares))} over the runs"
        )

    def load_text(self) -> str:
        before, after = self.machine["load"], self.machine["load_after"]
        text = f"{before} before, {after} after"
        if self.loads:
            lowest, highest = min(self.loads), max(self.loads)
            text += f", {lowest:.2f} to {highest:.2f} at the starts of the rounds"
        return text

    def busy(self) -> bool:
        loads = [self.machine["load"], self.machine["load_after"]]
        loads += [f"{load:.2f}" for load in self.loads]
        return any(is_busy(load) for load in loads)

    def command(self) -> str:
        command = "python benchmarks/models.py --write-doc"
        if self.args.quick:
            command += " --quick"
        if self.args.repeats != (2 if self.args.quick else 7):
            command += f" --repeats {self.args.repeats}"
        if self.args.workers != 2:
            command += f" --workers {self.args.workers}"
        if self.args.worktree:
            command += " --worktree"
        elif self.args.rev != "HEAD":
            command += f" --rev {self.args.rev}"
        return command

    def doc_text(self) -> str:
        rounds = self.args.repeats
        tables = [
            f"#### {self.title(prepared)}\n\n"
            + markdown_table([self.header(prepared), *self.rows(prepared)])
            for prepared in self.prepared_sets
        ]
        text = DOC_TEMPLATE.format(
            date=datetime.now(UTC).strftime("%Y-%m-%d"),
            rounds=f"{rounds} interleaved round{'s' if rounds != 1 else ''}",
            workers=self.args.workers,
            hybrid_lanes=self.hybrid_lanes_text(),
            workloads=self.workloads_text(),
            verdicts=self.verdicts(),
            tables="\n\n".join(tables),
            threshold=self.threshold_text(),
            loads=self.load_text(),
            steal=self.steal_text(),
            busy_note=BUSY_NOTE if self.busy() else "",
            command=self.command(),
            **self.machine,
        )
        return wrap_markdown(text)

    def write_doc(self) -> None:
        previous = DOC_PATH.read_text() if DOC_PATH.is_file() else "# Benchmarks\n"
        DOC_PATH.write_text(replace_section(previous, DOC_OWNER, self.doc_text()))
        print(f"Wrote its part of {DOC_PATH}")


BUSY_NOTE = """
Other programs were running on the machine during this measurement, so the
wall times, and with them images/s and latencies, carry more noise than on an
idle machine. The spread column shows how much. Rounds interleave the
contenders, so the load falls on all of them alike.
"""

THRESHOLD_TEMPLATE = """\
`benchmarks/hybrid_threshold.py` times `Pipeline.render` with
`engine="pillow"` and `engine="vips"` on the same baseline JPEGs. Render is
decode, the three default variants and their encoding, the only step whose
engine differs between hybrid's two lanes. It runs {photos} photos per size
({rotated}) for {rounds} rounds, in one process{core},
with libvips limited to one thread as in a hybrid worker. Each value is the
median over photos and rounds.

{table}

- By CPU time: {cpu}.
- By wall time: {wall}.
{even}{compared}
Up to 1024 px on the long edge, the medium and large variants are the decoded
photo itself and share one encoding. Above it, medium needs a resize and an
encoding of its own, and above 2048 px so does large. Both engines pay for
that, Pillow more, so the ratio rises in steps at those edges rather than
smoothly. The crossover therefore follows the long edge more than the pixel
count, and for photos of another aspect ratio it lies at another pixel count.
"""

DOC_TEMPLATE = """\
## Execution models on three workloads

This part is written by `benchmarks/models.py --write-doc`, so rerun it rather
than editing the numbers. It runs the job above under every imgflow execution
model and the two single-engine scripts, on three workloads, with
{rounds} measured on {date}.

### Workloads and contenders

Photos from `imgflow.samples`, the generator behind `imgflow samples DIR
--count N --megapixels MP --seed S [--progressive]`, cached under
`build/bench-samples`:

{workloads}

Contenders, with `--workers {workers}` except sequential:

- `imgflow run SET --out DIR --mode MODE --report FILE --quiet` for each of
  sequential (one process), parallel, pipelined, hybrid and auto. {hybrid_lanes}
- `ref_pyvips.py` and `ref_pillow.py`, the scripts described above, with
  `--timings FILE`.

### How it is measured

- Each run starts in a fresh wrapper process, which samples the summed RSS of
  the contender's whole process tree every 0.1 s with
  `imgflow.measure.TreeSampler`. Pages shared between processes count once per
  process, and a peak shorter than 0.1 s can be missed.
- CPU time is the user plus system time of the reaped process tree, from
  `os.times()` in the wrapper. CPU use is that time over the wall time times
  the number of cores, so 100% means every core was busy for the whole run.
- Latency is the per-image `seconds` of imgflow's `--report` and the scripts'
  `--timings`. For sequential, parallel, hybrid and the scripts, it is the time
  one process spends on the image, from reading it to writing its last file.
  For pipelined, it runs from the start of loading to the end of storing, so it
  also counts the waits in the queues between the stages. No other latency
  counts the time an image waits for a free worker, so none of them shows a
  small photo held up behind a large one. That would need the time each image
  was submitted, which the reports do not record.
- Every value is the median of the rounds (for latencies, of each round's
  percentile). Spread is the range of the rounds' wall times over their median.
  Every run is checked for 3 JPEG files per photo and, for imgflow, every image
  done; the notes column lists any shortfall.

### Targets

{verdicts}

### Results

{tables}

### Hybrid threshold: Pillow against libvips

{threshold}
### Machine

- Date: {date}
- CPU: {cpu}
- Memory: {memory}
- System: {system}, Python {python}
- libvips: {libvips}
- Pillow: {pillow}
- imgflow: commit {imgflow_commit}, run from a copy exported with `git archive`
- One-minute load average: {loads}
- CPU time stolen by the hypervisor (`steal` in `/proc/stat`), as a share of
  the machine's CPU time during each run: {steal}. Stolen time counts in the
  wall time but in no process's CPU time.
{busy_note}
### Reproduce

```
{command}
```

`make bench-models` runs the same script without writing this page, and
`--quick` uses fewer photos and rounds.
"""
