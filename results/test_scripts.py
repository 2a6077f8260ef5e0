"""Tests for the results scripts: that the committed figures are what the
scripts make of the committed raw data, and that the arithmetic behind the
tables (CPU per message, ratios, pairing) is right on inputs small enough
to check by hand. Standard library only; .ci/run runs them:

    python3 -m unittest discover -s results -p 'test_*.py'
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import matrix  # noqa: E402
import pool  # noqa: E402
import report  # noqa: E402


def readme_run() -> Path:
    """The run the README's results section is made from."""
    text = (ROOT / "README.md").read_text()
    block = text.split(report.README_BEGIN, 1)[1].split(report.README_END, 1)[0]
    found = re.search(r"\((results/[^)/]+)/summary\.md\)", block)
    assert found, "the README's results section names no run"
    return ROOT / found.group(1)


def echo_run(received: int, duration_s: float, server_cpu_pct: float | None) -> dict:
    """One wsecho-load result, with only what report.py reads."""
    return {
        "messages_received": received,
        "duration_s": duration_s,
        "server": None if server_cpu_pct is None else {"cpu_pct": server_cpu_pct},
        "rates": {"messages_received_per_s": received / duration_s},
        "client_cpu_pct": 99.0,
        "latency_us": {"p50": 100, "p99": 200},
        "errors": {"corrupted": 0},
        "exit_status": 0,
    }


class CommittedFigures(unittest.TestCase):
    """Every number in the README's results section and its run's summary
    comes from matrix.py --report-only on the run's raw results: a summary
    edited by hand, or a change to report.py that moves a figure without a
    re-run, fails here."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="wsecho-results-"))
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_the_readmes_run_is_remade_byte_for_byte_from_its_raw_results(self) -> None:
        run = readme_run()
        # Only the raw results: every other file must be made again.
        copy = self.tmp / run.name
        shutil.copytree(run / "raw", copy / "raw")
        subprocess.run([sys.executable, str(HERE / "matrix.py"), "--report-only", str(copy)],
                       check=True, capture_output=True)
        for made in sorted(run.glob("*")):
            if made.is_file():
                self.assertTrue((copy / made.name).is_file(), f"{run.name}/{made.name} was not made")
                self.assertEqual((copy / made.name).read_bytes(), made.read_bytes(), f"{run.name}/{made.name}")

    def test_the_readmes_results_section_is_its_runs(self) -> None:
        run = readme_run()
        (self.tmp / "results").mkdir()
        shutil.copytree(run, self.tmp / "results" / run.name)
        readme = self.tmp / "README.md"
        shutil.copy(ROOT / "README.md", readme)
        summary = json.loads((run / "results.json").read_text())
        report.update_readme(readme, self.tmp / "results" / run.name, summary)
        self.assertEqual(readme.read_text(), (ROOT / "README.md").read_text())


class Arithmetic(unittest.TestCase):
    def test_cpu_per_message_is_server_cpu_time_over_messages(self) -> None:
        # Half a core for 10 s is 5 s of CPU; over a million messages, 5 µs each.
        self.assertAlmostEqual(report.cpu_us_per_msg(echo_run(1_000_000, 10.0, 50.0)), 5.0)
        self.assertIsNone(report.cpu_us_per_msg(echo_run(1_000_000, 10.0, None)))
        self.assertIsNone(report.cpu_us_per_msg(echo_run(0, 10.0, 50.0)))

    def test_a_missed_cpu_sample_makes_the_bottleneck_unknown_not_no(self) -> None:
        self.assertEqual(report.bottleneck([{"generator_bottleneck": "no"}, {}]), "unknown")
        self.assertEqual(report.bottleneck([{"generator_bottleneck": "no"}, {"generator_bottleneck": "yes"}]), "yes")
        self.assertEqual(report.bottleneck([{"generator_bottleneck": False}]), "no")
        self.assertEqual(report.bottleneck([{"generator_bottleneck": True}, {}]), "yes")

    def test_rows_take_medians_and_ratios_to_wsecho_and_the_ceiling(self) -> None:
        # CPU per message: wsecho 4, 5, 6 µs; uWebSockets 5, 5, 5; raw TCP 2, 2, 2.
        runs = lambda *us: [echo_run(1_000_000, 10.0, u * 10) for u in us]  # noqa: E731
        matrix = {"100x20": {"wsecho": runs(6, 4, 5), "uWebSockets": runs(5, 5, 5), "raw-tcp": runs(2, 2, 2)}}
        [row] = report.rows(matrix, ["wsecho", "uWebSockets", "raw-tcp"])
        ours, theirs = row["servers"]["wsecho"], row["servers"]["uWebSockets"]
        self.assertEqual((row["connections"], row["size"]), (100, 20))
        self.assertAlmostEqual(ours["cpu_us_per_msg"], 5.0)
        self.assertEqual([round(c, 6) for c in ours["cpu_us_per_msg_runs"]], [6.0, 4.0, 5.0])
        self.assertAlmostEqual(theirs["cpu_ratio"], 1.0)
        self.assertAlmostEqual(ours["ceiling_cpu_ratio"], 2.5)
        self.assertAlmostEqual(theirs["ceiling_cpu_ratio"], 2.5)

    def test_a_server_without_a_cpu_sample_has_no_cpu_ratio(self) -> None:
        matrix = {"10x1024": {"wsecho": [echo_run(1000, 1.0, None)], "uWebSockets": [echo_run(1000, 1.0, 50.0)]}}
        [row] = report.rows(matrix, ["wsecho", "uWebSockets"])
        self.assertIsNone(row["servers"]["wsecho"]["cpu_us_per_msg"])
        self.assertIsNone(row["servers"]["uWebSockets"]["cpu_ratio"])

    def test_the_summary_counts_the_wsecho_load_results_that_fell_back_to_ticks(self) -> None:
        def clocked(clock: str | None) -> dict:
            run = echo_run(1000, 1.0, 50.0)
            run["server"]["cpu_clock"] = clock
            return run
        found = {"echo": {"100x20": {"wsecho": [clocked("ns"), clocked("ticks")],
                                     "uWebSockets": [clocked("ns"), echo_run(1000, 1.0, 50.0)]}},
                 "rate": {"100x20": {"wsecho": [clocked(None)]}}}
        self.assertEqual(report.cpu_clocks(found), {"ns": 2, "ticks": 1})
        self.assertIn("1 of this run's 3 wsecho-load results fell back to ticks",
                      report.clock_count({"cpu_clocks": report.cpu_clocks(found)}))
        self.assertIn("All 2", report.clock_count({"cpu_clocks": {"ns": 2, "ticks": 0}}))
        # Results from before the field: nothing to say, and the meta as it was.
        self.assertEqual(report.cpu_clocks({"echo": {"100x20": {"wsecho": [echo_run(1000, 1.0, 50.0)]}}}),
                         {"ns": 0, "ticks": 0})
        self.assertEqual(report.clock_count({}), "")


def summary_run(reps: int, ours: list[float], theirs: list[float]) -> dict:
    """A results.json with one case, only what pool.py reads."""
    servers = {"wsecho": {"cpu_us_per_msg_runs": ours}, "uWebSockets": {"cpu_us_per_msg_runs": theirs}}
    return {"meta": {"repetitions": reps}, "throughput": [{"case": "500x16384", "servers": servers}]}


class ServerCpu(unittest.TestCase):
    def test_a_process_cpu_time_counts_its_exited_threads_to_the_nanosecond(self) -> None:
        code = ("import threading, time\n"
                "def spin():\n"
                "    t = time.thread_time()\n"
                "    while time.thread_time() - t < 0.05: pass\n"
                "th = threading.Thread(target=spin); th.start(); th.join()\n"
                # join() returns before the kernel has reaped the thread.
                "import os\n"
                "gone_by = time.monotonic() + 5\n"
                "while len(os.listdir('/proc/self/task')) > 1 and time.monotonic() < gone_by: time.sleep(0.001)\n"
                "print('done', flush=True); time.sleep(30)\n")
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        self.addCleanup(child.stdout.close)
        before = matrix.cpu_seconds(child.pid)
        self.assertEqual(child.stdout.readline(), "done\n")
        after = matrix.cpu_seconds(child.pid)
        self.assertEqual(os.listdir(f"/proc/{child.pid}/task"), [str(child.pid)], "the spinning thread is gone")
        self.assertGreaterEqual(after - before, 0.05)
        self.assertIsNone(matrix.cpu_seconds(2**22 + 1))


class ChatRows(unittest.TestCase):
    @staticmethod
    def run_(p50: int, load: float | None) -> dict:
        return {"rates": {"messages_sent_per_s": 1000.0, "messages_received_per_s": 99000.0},
                "latency_us": {"p50": p50, "p99": 2 * p50, "p999": 3 * p50, "max": 4 * p50},
                "errors": {}, "server": {"cpu_pct": 28.0}, "client_cpu_pct": load}

    def test_a_case_name_gives_its_shape_and_payload_and_old_names_read_as_20_b(self) -> None:
        found = {"chat": {"100x1": [self.run_(200, 25.0)], "1000x100-json-deflate": [self.run_(370, None)]}}
        meta = json.loads((readme_run() / "raw/found.json").read_text())["meta"]
        s = report.summarize(found, meta, ["wsecho"])
        old, new = s["chat"]["100x1"], s["chat"]["1000x100-json-deflate"]
        self.assertEqual((old["peers"], old["rooms"], old["payload"], old["load_cpu_pct"]), (100, 1, "", 25.0))
        self.assertEqual((new["peers"], new["rooms"], new["payload"], new["load_cpu_pct"]), (1000, 100, "json-deflate", None))
        rows = [l for l in report.markdown(s).splitlines() if l.startswith(("| 100 ×", "| 1000 ×"))]
        self.assertTrue(rows[0].startswith("| 100 × 1, 20 B binary |") and rows[0].endswith("| 25 % |"), rows[0])
        self.assertTrue(rows[1].startswith("| 1000 × 100, 1 KiB JSON text, permessage-deflate |")
                        and rows[1].endswith("| – |"), rows[1])

    def test_every_chat_case_the_matrix_runs_has_a_label(self) -> None:
        for peers, rooms, label, _ in matrix.CHAT:
            self.assertIn(label, report.CHAT_PAYLOADS, matrix.chat_case(peers, rooms, label))


class Pooling(unittest.TestCase):
    def test_repetitions_pair_within_a_run_and_pool_across_runs(self) -> None:
        runs = [summary_run(2, [4.0, 6.0], [5.0, 5.0]), summary_run(2, [5.5, 4.5], [5.0, 5.0])]
        p = pool.pool(runs, "throughput", "uWebSockets")["500x16384"]
        self.assertEqual(p["ours"], [4.0, 6.0, 5.5, 4.5])
        self.assertEqual(p["paired"], [0.8, 1.2, 1.1, 0.9])
        [row] = pool.table({"500x16384": p}, "uWebSockets")[2:]
        cells = [c.strip() for c in row.strip("|").split("|")]
        # Medians 5.0 and 5.0; paired ratios 0.8, 0.9, 1.1, 1.2: median 1.0,
        # two at or below; four ratios are too few for a 95 % interval.
        self.assertEqual(cells, ["500 × 16 KiB", "5.00", "5.00", "1.000", "1.000", "–", "2 of 4"])

    def test_the_median_interval_is_the_order_statistics_the_binomial_allows(self) -> None:
        # n = 12: P(at most 2 of 12 below the median) = 79/4096, twice that is
        # under 5 %, and with 3 it is not: the 3rd smallest to the 3rd largest.
        ratios = [0.90 + 0.01 * i for i in range(12)]
        random.Random(7).shuffle(ratios)
        low, high = pool.median_interval(ratios)
        self.assertAlmostEqual(low, 0.92)
        self.assertAlmostEqual(high, 0.99)
        # n = 6: only the extremes, at 1 - 2/64.
        self.assertEqual(pool.median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]), (1.0, 6.0))
        self.assertIsNone(pool.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]))

    def test_a_run_that_lost_a_sample_is_pooled_but_not_paired(self) -> None:
        # The second repetition of uWebSockets lost its sample: pairing by
        # position would set wsecho's third against uWebSockets' second.
        runs = [summary_run(3, [4.0, 6.0, 5.0], [5.0, 5.0])]
        p = pool.pool(runs, "throughput", "uWebSockets")["500x16384"]
        self.assertEqual(p["theirs"], [5.0, 5.0])
        self.assertEqual(p["paired"], [])
        self.assertEqual(pool.table({"500x16384": p}, "uWebSockets")[2:], [])

    def test_each_lists_the_paired_ratios_in_repetition_order(self) -> None:
        p = pool.pool([summary_run(3, [4.0, 6.0, 5.0], [5.0, 5.0, 5.0])], "throughput", "uWebSockets")
        self.assertEqual(pool.each(p)[2:], ["| 500 × 16 KiB | 0.800, 1.200, 1.000 |"])

    def test_runs_without_the_other_server_are_left_out(self) -> None:
        run = summary_run(1, [4.0], [5.0])
        del run["throughput"][0]["servers"]["uWebSockets"]
        self.assertEqual(pool.pool([run], "throughput", "uWebSockets"), {})

class PooledTable(unittest.TestCase):
    """Each pooled table in README.md and results/README.md is what the
    pool.py command above it prints: each cell's ratio of medians (to the
    decimals shown) and its count of repetitions at or below."""

    def test_every_pooled_table_is_pool_py_on_the_runs_it_names(self) -> None:
        checked = 0
        for doc in (ROOT / "README.md", ROOT / "results/README.md"):
            text = doc.read_text()
            commands = list(re.finditer(r"`python3 results/pool\.py ([^`]+)`", text))
            self.assertTrue(commands, f"{doc.name} names no pool.py command")
            for command in commands:
                with self.subTest(doc=str(doc.relative_to(ROOT)), at=command.start()):
                    checked += self.check_table(command.group(1).split(), text[command.end():])
        self.assertGreater(checked, 0)

    def check_table(self, dirs: list[str], after: str) -> int:
        """Checks the first table after a command; returns its cells."""
        runs = [json.loads((ROOT / d / "results.json").read_text()) for d in dirs]
        lines = after[after.index("\n| case |") + 1:].split("\n\n", 1)[0].splitlines()
        columns = [c.strip() for c in lines[0].strip("|").split("|")][1:]
        sections = {"wsecho-load": "throughput", "load_test": "throughput_load_test"}
        checked = 0
        for line in lines[2:]:
            label, *cells = [c.strip() for c in line.strip("|").split("|")]
            for column, cell in zip(columns, cells):
                if not cell:
                    continue
                section, case = sections[column], label
                if label.startswith("fixed rate, "):
                    section, case = "rate", "100 × " + label.removeprefix("fixed rate, ")
                shown = re.fullmatch(r"\**(\d+\.(\d+))×\** \((\d+) of (\d+)\)", cell)
                self.assertIsNotNone(shown, f"{label}, {column}: {cell!r}")
                pooled = {pool.case_name(k): v for k, v in pool.pool(runs, section, "uWebSockets").items()}
                p = pooled[case]
                ratio = statistics.median(p["ours"]) / statistics.median(p["theirs"])
                self.assertEqual(f"{ratio:.{len(shown.group(2))}f}", shown.group(1), f"{label}, {column}")
                won = sum(r <= 1.0 for r in p["paired"])
                self.assertEqual((won, len(p["paired"])), (int(shown.group(3)), int(shown.group(4))), f"{label}, {column}")
                checked += 1
        return checked


class HistoryTable(unittest.TestCase):
    """Each row of results/README.md's table of full runs is what that
    run's results.json says: wsecho's CPU per message ÷ uWebSockets' per
    generator (lowest and highest, to the decimals shown), at the two fixed
    rates, and how many of the fourteen cells are at or below 1.0; and each
    row of its permessage-deflate table."""

    ROW = re.compile(r"^\| \[[^\]]+\]\(([^)]+)/summary\.md\) \| .* \| ([^|]+) \| ([^|]+) \| ([^|]+) \| (\d+) of 14 \|$",
                     re.MULTILINE)

    def assert_shown(self, shown: str, values: list[float], where: str) -> None:
        figures = re.findall(r"(\d+\.(\d+))", shown)
        self.assertEqual(len(figures), len(values), f"{where}: {shown!r}")
        for (figure, decimals), value in zip(figures, values):
            self.assertEqual(f"{value:.{len(decimals)}f}", figure, where)

    def test_every_run_row_is_its_results_json(self) -> None:
        rows = list(self.ROW.finditer((HERE / "README.md").read_text()))
        self.assertGreater(len(rows), 0)
        for row in rows:
            run, by_load, by_load_test, fixed, count = row.groups()
            with self.subTest(run=run):
                summary = json.loads((HERE / run / "results.json").read_text())
                ratios = {key: [r for case in summary.get(key) or []
                                if (r := report.versus_ratio(case, "uWebSockets")) is not None]
                          for key in ("throughput", "throughput_load_test", "rate")}
                for shown, key in ((by_load, "throughput"), (by_load_test, "throughput_load_test")):
                    self.assert_shown(shown, [min(ratios[key]), max(ratios[key])], f"{run} {key}")
                self.assert_shown(fixed, ratios["rate"], f"{run} rate")
                cells = [r for key in ratios for r in ratios[key]]
                self.assertEqual((sum(r <= 1.0 for r in cells), len(cells)), (int(count), 14), run)

    def test_every_deflate_row_is_its_results_json(self) -> None:
        rows = re.findall(r"^\| \[[^\]]+\]\(([^)]+)/summary\.md#permessage-deflate\)[^|]* \| (.+) \|$",
                          (HERE / "README.md").read_text(), re.MULTILINE)
        self.assertGreater(len(rows), 0)
        for run, shown in rows:
            with self.subTest(run=run):
                deflate = json.loads((HERE / run / "results.json").read_text())["deflate"]
                ours, theirs = (deflate["echo"][s]["deflate"]["cpu_us_per_msg"] for s in ("wsecho", "uWebSockets"))
                idle = deflate["idle"]["wsecho"]
                kib = [idle[mode]["bytes_per_connection"] / 1024 for mode in ("deflate", "plain")]
                self.assertEqual(shown, f"{ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}× | {kib[0]:.2f} / {kib[1]:.2f}")


if __name__ == "__main__":
    unittest.main()
