"""Tables, target verdicts and the docs/benchmarks.md part for models.py."""

from __future__ import annotations

import argparse
import statistics
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import hybrid_threshold
from common import BUSY_LOAD, DOC_PATH, is_busy, replace_section

if TYPE_CHECKING:
    from models import Contender, Measurement, Part, Prepared, Results, Run

DOC_OWNER = "benchmarks/models.py"
# The workload made of the mix's small photos alone.
UNIFORM_SMALL = "0.3 MP"
# Engines within this share of each other count as even in the threshold text.
EVEN_MARGIN = 0.05
# Above this share of the machine's CPU time used by other processes during
# a run, the page warns that the wall times are noisy.
OTHER_BUSY_SHARE = 0.05
# Percentiles of processing time and time to result in the tables.
PERCENTILES = (50, 95, 99)


def milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = 1000 * seconds
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def seconds_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def milliseconds_with_unit(seconds: float) -> str:
    return f"{milliseconds(seconds)} ms"


def seconds_with_unit(seconds: float) -> str:
    return f"{seconds:.2f} s"


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
        columns += [f"processing p{q} ms" for q in PERCENTILES]
        columns += [f"to result p{q} s" for q in PERCENTILES]
        if prepared.small_names:
            columns += ["small processing p95 ms", "small to result p95 s"]
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
            ]
            quantiles = [q / 100 for q in PERCENTILES]
            row += [milliseconds(measurement.latency(q)) for q in quantiles]
            row += [
                seconds_text(measurement.latency(q, source="finished"))
                for q in quantiles
            ]
            if prepared.small_names:
                small = prepared.small_names
                row += [
                    milliseconds(measurement.latency(0.95, small)),
                    seconds_text(measurement.latency(0.95, small, "finished")),
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
        notes += [self.auto_note(mix), self.engines_note(mix)]
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

    def engines_note(self, mix: Prepared) -> str:
        """Count the photos hybrid rendered with each engine, from its reports."""
        hybrid = self.get(mix.name, "hybrid")
        if hybrid is None or not hybrid.runs:
            return ""
        counts: dict[str, list[int]] = {}
        for run in hybrid.runs:
            per_engine = Counter(run.engines.values())
            for engine, count in per_engine.items():
                counts.setdefault(engine, []).append(count)
        listed = join_words(
            [
                f"{statistics.median(values):g} photos with `{engine}`"
                for engine, values in sorted(counts.items())
            ]
        )
        return (
            f"Hybrid's reports name the engine of each photo: per run (median), "
            f"{listed}. Both kinds ran on one pool of "
            f"{plural(self.args.workers, 'worker')}, as parallel's photos do."
        )

    def latency_verdict(self, mix: Prepared) -> str:
        """Build the verdict on whether pipelined or hybrid lower the small p95."""
        question = (
            "**Do pipelined or hybrid give the small photos of the mix a lower p95 "
            "than parallel?** Time to result is what a caller waits for a photo; "
            "processing time leaves out the wait for a free worker."
        )
        parallel = self.get(mix.name, "parallel")
        if parallel is None or not parallel.runs:
            return f"{question} Not measured: the parallel runs failed."
        notes = []
        for key in ("pipelined", "hybrid"):
            if self.get(mix.name, key) is None:
                notes.append(f"{key}: not measured.")
                continue
            notes.append(self.small_p95_note(mix, key, "finished"))
            notes.append(self.small_p95_note(mix, key, "processing"))
        bullets = "\n".join(f"- {note}" for note in notes)
        return (
            f"{question}\n\n{bullets}\n\nThe table gives medians over the rounds "
            "for the small photos of the mix. It lists the p95 of three measures: "
            "processing time, time inside imgflow's stages and time to result. "
            "Then it gives when the last small photo's result arrived and how "
            "long the whole run took. The last column is the contender's p95 "
            f"processing time on the {UNIFORM_SMALL} workload, where no large "
            "photo shares the cores."
        )

    def small_p95_note(self, mix: Prepared, key: str, source: str) -> str:
        """Compare one model's small-photo p95 with parallel's on one measure."""
        small = mix.small_names
        measurement = self.get(mix.name, key)
        parallel = self.get(mix.name, "parallel")
        assert measurement is not None and parallel is not None
        value = measurement.latency(0.95, small, source)
        base = parallel.latency(0.95, small, source)
        kind = "time to result" if source == "finished" else "processing time"
        if value is None or base is None:
            return f"{key}, {kind}: not measured."
        show = seconds_with_unit if source == "finished" else milliseconds_with_unit
        won, total = self.rounds_won(
            mix.name,
            key,
            "parallel",
            lambda run: percentile_of(getattr(run, source), 0.95, small),
        )
        text = (
            f"{key}, {kind}: {'yes' if value < base else 'no'}, {show(value)} "
            f"against parallel's {show(base)}, lower in {won} of {total} rounds."
        )
        if source == "processing":
            text += self.processing_reason(mix, key)
        return text

    def processing_reason(self, mix: Prepared, key: str) -> str:
        """Return the figures behind a small processing p95: stages and 0.3 MP alone."""
        small = mix.small_names
        measurement = self.get(mix.name, key)
        assert measurement is not None
        total = measurement.latency(0.95, small)
        inside = measurement.latency(0.95, small, "stage_seconds")
        sentences = []
        if total and inside is not None and inside < 0.5 * total:
            sentences.append(
                f"Inside the stages its p95 is {milliseconds_with_unit(inside)}. "
                "The rest is time queued between the stages, which its processing "
                "time counts."
            )
        alone = self.get(UNIFORM_SMALL, key)
        parallel_alone = self.get(UNIFORM_SMALL, "parallel")
        if alone and parallel_alone:
            value = alone.latency(0.95)
            base = parallel_alone.latency(0.95)
            if value is not None and base is not None:
                sentences.append(
                    f"On the {UNIFORM_SMALL} workload alone its p95 is "
                    f"{milliseconds_with_unit(value)} against parallel's "
                    f"{milliseconds_with_unit(base)}."
                )
        return "".join(f" {sentence}" for sentence in sentences)

    def small_latency_rows(self, mix: Prepared) -> list[list[str]]:
        small = mix.small_names
        rows = [
            [
                "small photos of the mix",
                "p95 processing ms",
                "p95 inside the stages ms",
                "p95 time to result s",
                "last small result s",
                "whole run s",
                f"p95 processing on the {UNIFORM_SMALL} workload ms",
            ]
        ]
        for contender in self.contenders:
            measurement = self.get(mix.name, contender.key)
            if measurement is None:
                continue
            inside = None
            if contender.is_imgflow:
                inside = measurement.latency(0.95, small, "stage_seconds")
            uniform = self.get(UNIFORM_SMALL, contender.key)
            rows.append(
                [
                    contender.label,
                    milliseconds(measurement.latency(0.95, small)),
                    milliseconds(inside),
                    seconds_text(measurement.latency(0.95, small, "finished")),
                    seconds_text(measurement.latency(1.0, small, "finished")),
                    seconds_text(measurement.median_of(lambda run: run.wall_seconds)),
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

    def hybrid_text(self) -> str:
        from imgflow.executors.hybrid import (
            DEFAULT_BATCH_SIZE,
            LARGE_BACKLOG_PER_WORKER,
            HybridExecutor,
        )
        from imgflow.executors.routing import DEFAULT_SMALL_PIXELS

        workers = self.args.workers
        # HybridExecutor._fill stops admitting inputs at this many of each kind.
        small_window = DEFAULT_BATCH_SIZE * workers
        large_window = LARGE_BACKLOG_PER_WORKER * workers
        engine = HybridExecutor(workers).small_engine
        engine_name = "Pillow" if engine == "pillow" else "libvips"
        return (
            f"Hybrid runs one pool of {workers} worker processes, as parallel "
            "does. Each task names its engine: a batch of up to "
            f"{DEFAULT_BATCH_SIZE} small baseline JPEGs (up to "
            f"{DEFAULT_SMALL_PIXELS:,} pixels) for {engine_name}, or one other "
            "image for libvips. Other images start costliest first, and may "
            "occupy every worker but one while small batches wait. Hybrid "
            "stops admitting inputs while "
            f"{small_window} small or {large_window} other ones wait."
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
        """Place DEFAULT_SMALL_PIXELS of the measured commit against the sizes."""
        from imgflow.executors.routing import DEFAULT_SMALL_PIXELS

        bracket = threshold.bracket("cpu")
        crossover = threshold.crossover_mp("cpu")
        if bracket is None or crossover is None:
            return ""
        low, high = bracket
        setting = (
            f"`DEFAULT_SMALL_PIXELS` in `imgflow/executors/routing.py` is "
            f"{DEFAULT_SMALL_PIXELS:,} at the measured commit"
        )
        if DEFAULT_SMALL_PIXELS < low.pixels:
            return (
                f"\n{setting}, below {low.megapixels:g} MP ({low.pixels:,} pixels), "
                "so hybrid leaves to libvips some photos that Pillow renders "
                "faster.\n"
            )
        if DEFAULT_SMALL_PIXELS >= high.pixels:
            return (
                f"\n{setting}, at or above {high.megapixels:g} MP "
                f"({high.pixels:,} pixels), so hybrid sends photos to Pillow in a "
                "range where libvips renders them faster.\n"
            )
        estimate = round(crossover * 1e6, -4)
        if estimate == DEFAULT_SMALL_PIXELS:
            side = f"It is the interpolated crossover, rounded to {estimate:,.0f}."
        elif estimate < DEFAULT_SMALL_PIXELS:
            side = (
                f"It is above the interpolated crossover of about {estimate:,.0f} "
                "pixels, so by that estimate hybrid sends the photos from there up "
                "to the setting to Pillow, where libvips would be faster."
            )
        else:
            side = (
                f"It is below the interpolated crossover of about {estimate:,.0f} "
                "pixels."
            )
        return (
            f"\n{setting}. That lies between {low.megapixels:g} MP "
            f"({low.pixels:,} pixels), where Pillow is faster, and "
            f"{high.megapixels:g} MP ({high.pixels:,} pixels), where libvips is, "
            f"and no size in between was measured. {side}\n"
        )

    def shares(self, field_name: str) -> list[float]:
        """Return one per-run share field (``steal_share``, ``other_share``)."""
        return [
            value
            for measurement in self.results.values()
            for run in measurement.runs
            if (value := getattr(run, field_name)) is not None
        ]

    def shares_text(self, field_name: str) -> str:
        shares = self.shares(field_name)
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
        """Tell whether other programs took a noticeable share of the CPU."""
        others = self.shares("other_share")
        if others:
            return max(others) > OTHER_BUSY_SHARE
        loads = [self.machine["load"], self.machine["load_after"]]
        loads += [f"{load:.2f}" for load in self.loads]
        return any(is_busy(load) for load in loads)

    def load_note(self) -> str:
        others = self.shares("other_share")
        if self.busy():
            share = f"up to {percent(max(others))}" if others else "an unmeasured share"
            return BUSY_NOTE.format(share=share)
        if others and any(load > BUSY_LOAD for load in self.loads):
            return LOAD_NOTE.format(share=percent(max(others)))
        return ""

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
            hybrid=self.hybrid_text(),
            workloads=self.workloads_text(),
            verdicts=self.verdicts(),
            tables="\n\n".join(tables),
            threshold=self.threshold_text(),
            loads=self.load_text(),
            steal=self.shares_text("steal_share"),
            others=self.shares_text("other_share"),
            load_note=self.load_note(),
            command=self.command(),
            **self.machine,
        )
        return wrap_markdown(text)

    def write_doc(self) -> None:
        previous = DOC_PATH.read_text() if DOC_PATH.is_file() else "# Benchmarks\n"
        DOC_PATH.write_text(replace_section(previous, DOC_OWNER, self.doc_text()))
        print(f"Wrote its part of {DOC_PATH}")


BUSY_NOTE = """
Other programs used {share} of the machine's CPU time during a run, so the
wall times, and with them images/s and times to result, carry more noise than
on an idle machine. The spread column shows how much. Rounds interleave the
contenders, so the load falls on all of them alike.
"""

LOAD_NOTE = """
The load average decays over about a minute, so at the start of a round it
still counts the benchmark's own processes of the round before. Other programs
used at most {share} of the machine's CPU time during any run.
"""

THRESHOLD_TEMPLATE = """\
`benchmarks/hybrid_threshold.py` times `Pipeline.render` with
`engine="pillow"` and `engine="vips"` on the same baseline JPEGs. Render is
decode, the three default variants and their encoding, the only step whose
engine differs between hybrid's two kinds of task. It runs {photos} photos per size
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
  sequential (one process), parallel, pipelined, hybrid and auto. {hybrid}
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
- Processing time is the per-image `seconds` of imgflow's `--report` and the
  scripts' `--timings`. For sequential, parallel, hybrid and the scripts, it is
  the time one process spends on the image, from reading it to writing its last
  file. For pipelined, it runs from the start of loading to the end of storing,
  so it also counts the waits in the queues between the stages. It leaves out
  the time an image waits for a free worker.
- Time to result is the per-image `finished_seconds` of the same files: the
  seconds from the start of the run to the moment imgflow's coordinating
  process received the image's result, or the scripts' worker finished the
  image. Every input is there at the start, so this is how long a caller
  waited for the image, the wait for a free worker included. The clock starts
  after the interpreter's start-up and imports, which the wall time counts. The
  scripts' figure leaves out the trip of the result back to their parent
  process.
- Every value is the median of the rounds (for percentiles, of each round's
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
- CPU time of other processes, as a share of the machine's CPU time during
  each run: {others}. It is the busy time in `/proc/stat` less the CPU time of
  the run's process tree and of its wrapper.
{load_note}
### Reproduce

```
{command}
```

`make bench-models` runs the same script without writing this page, and
`--quick` uses fewer photos and rounds.
"""
