#!/usr/bin/env python3
"""The results pipeline measured for real, briefly: `matrix.py --quick`
against wsecho and the raw TCP echo (results/peers/tcp_echo.c, built here),
every part that needs no peer from elsewhere, then checks of what it wrote.

test_scripts.py remakes committed runs from their raw data; this is the
other half, the measuring paths themselves (starting and stopping servers,
driving wsecho-load, reading CPU, RSS and the kernel's slab, the chat, HTTP/2
and deflate runs), which only a run exercises. It checks that every cell was
measured, without errors, and adds up; never how fast anything was (a rate
only where the offered rate is the point: the open-loop cells and chat's
fan-out). About 90 s. Needs the release builds (`cargo build --release
--workspace`) and cc; `.ci/run` runs it after the release build:

    python3 results/check_pipeline.py
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "results"))

import matrix  # noqa: E402  (after the path above)

SERVERS = ("wsecho", "raw-tcp")
CASE = "100x20"
IDLE = 1000
PARTS = "echo,rate,rtt,idle,chat,h2,deflate"
# Peers a run elsewhere may have exported: this run has only the two above.
PEER_VARS = ("FWS_ECHO_BIN", "SOCKUDO_ECHO_BIN", "UWS_ECHO_BIN", "UWS_DEFLATE_ECHO_BIN", "LOADTEST_BIN")


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


class QuickRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for binary in ("wsecho", "wsecho-load"):
            if not (ROOT / "target/release" / binary).exists():
                raise unittest.SkipTest(f"target/release/{binary} is not built (cargo build --release --workspace)")
        cls.tmp = Path(tempfile.mkdtemp(prefix="wsecho-pipeline-"))
        # Also when the run fails, where tearDownClass would not run.
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        tcp = cls.tmp / "tcp_echo"
        subprocess.run(["cc", "-O2", "-o", str(tcp), str(ROOT / "results/peers/tcp_echo.c")], check=True)
        env = {k: v for k, v in os.environ.items() if k not in PEER_VARS}
        env.update(TCP_ECHO_BIN=str(tcp), TCP_ECHO_CC="cc")
        readme = (ROOT / "README.md").read_bytes()
        cls.out = cls.tmp / "run"
        subprocess.run([sys.executable, str(ROOT / "results/matrix.py"), "--quick", "--servers", ",".join(SERVERS),
                        "--cases", CASE, "--parts", PARTS, "--idle", str(IDLE), "--out", str(cls.out)],
                       env=env, check=True, timeout=600)
        cls.readme_unchanged = (ROOT / "README.md").read_bytes() == readme
        cls.s = json.loads((cls.out / "results.json").read_text())

    def cells(self, rows: list[dict], case: str) -> dict:
        [row] = [r for r in rows if r["case"] == case]
        self.assertEqual(sorted(row["servers"]), sorted(SERVERS))
        return row["servers"]

    def assert_clean(self, cell: dict):
        self.assertEqual(cell["errors"], 0)
        self.assertTrue(cell["exit_statuses"])
        self.assertEqual(set(cell["exit_statuses"]), {0})

    def test_saturation_cells_are_measured_and_their_ratios_add_up(self):
        cells = self.cells(self.s["throughput"], CASE)
        for name, cell in cells.items():
            with self.subTest(server=name):
                self.assert_clean(cell)
                self.assertTrue(positive(cell["median"]))
                self.assertTrue(positive(cell["cpu_us_per_msg"]))
                self.assertIn(cell["generator_bottleneck"], ("yes", "no", "unknown"))
        ws, tcp = cells["wsecho"], cells["raw-tcp"]
        self.assertAlmostEqual(ws["ceiling_ratio"], ws["median"] / tcp["median"])
        self.assertAlmostEqual(ws["ceiling_cpu_ratio"], ws["cpu_us_per_msg"] / tcp["cpu_us_per_msg"])

    def test_fixed_rate_cells_get_the_offered_rate(self):
        for conns, size in matrix.RATE_CASES:
            for name, cell in self.cells(self.s["rate"], f"{conns}x{size}").items():
                with self.subTest(case=f"{conns}x{size}", server=name):
                    self.assert_clean(cell)
                    # Open loop: the rate is what was asked for, whatever
                    # the machine (neither side is near saturation).
                    self.assertAlmostEqual(cell["median"] / matrix.RATE, 1, delta=0.1)
                    self.assertTrue(positive(cell["cpu_us_per_msg"]))

    def test_one_connection_latency_is_measured(self):
        for name in SERVERS:
            with self.subTest(server=name):
                rtt = self.s["rtt"][name]
                self.assertEqual(rtt["errors"], 0)
                self.assertTrue(0 < rtt["p50"] <= rtt["p99"] <= rtt["max"])

    def test_idle_connections_are_held_and_weighed(self):
        for name in SERVERS:
            with self.subTest(server=name):
                idle = self.s["idle"][name][str(IDLE)]
                self.assertEqual((idle["connections"], idle["requested"], idle["errors"]), (IDLE, IDLE, 0))
                self.assertTrue(positive(idle["kib_per_connection"]))
                self.assertGreater(idle["rss_after_kib"], idle["rss_before_kib"])
        self.assertTrue(positive(self.s["kernel_per_socket"]["bytes"]))

    def test_chat_delivers_each_message_to_every_other_peer_in_its_room(self):
        for peers, rooms, label, _ in matrix.CHAT:
            with self.subTest(peers=peers, rooms=rooms, payload=label):
                chat = self.s["chat"][matrix.chat_case(peers, rooms, label)]
                self.assertEqual(chat["errors"], 0)
                fan_out = peers // rooms - 1
                self.assertAlmostEqual(chat["deliveries_per_s"] / (chat["sent_per_s"] * fan_out), 1, delta=0.05)
                self.assertTrue(positive(chat["server_cpu_pct"]))

    def test_http2_runs_share_one_connection(self):
        self.assertTrue(self.s["http2"])
        for case, row in self.s["http2"].items():
            for proto, cell in row["protocols"].items():
                with self.subTest(case=case, protocol=proto):
                    self.assertEqual(cell["errors"], 0)
                    self.assertEqual(set(cell["exit_statuses"]), {0})
                    self.assertEqual(cell["tcp_connections"], 1 if proto == "h2" else row["connections"])
                    self.assertTrue(positive(cell["messages_per_s"]))

    def test_deflate_is_negotiated_and_compresses_and_plain_is_not(self):
        echo = self.s["deflate"]["echo"]["wsecho"]
        self.assert_clean(echo["deflate"])
        self.assert_clean(echo["plain"])
        self.assertEqual(set(echo["deflate"]["outcomes"]), {"negotiated"})
        self.assertEqual(set(echo["plain"]["outcomes"]), {"not offered"})
        self.assertGreater(echo["deflate"]["ratio_sent"], 1)
        self.assertGreater(echo["deflate"]["ratio_received"], 1)
        idle = self.s["deflate"]["idle"]["wsecho"]
        for mode, outcome in (("deflate", "negotiated"), ("plain", "not offered")):
            with self.subTest(mode=mode):
                held = idle[mode]
                self.assertEqual((held["connections"], held["errors"]), (matrix.DEFLATE_IDLE, 0))
                self.assertEqual(held["outcome"], outcome)
                self.assertTrue(positive(held["bytes_per_connection"]))

    def test_the_report_is_written_and_the_readme_left_alone(self):
        meta = self.s["meta"]
        self.assertTrue(meta["quick"] and meta["partial"])
        self.assertTrue(self.readme_unchanged, "a partial run rewrote README.md")
        summary = (self.out / "summary.md").read_text()
        for name in SERVERS:
            self.assertIn(name, summary)
        charts = sorted(self.out.glob("*.svg"))
        self.assertTrue(charts)
        for chart in charts:
            with self.subTest(chart=chart.name):
                self.assertTrue(ET.parse(chart).getroot().tag.endswith("svg"))
        found = json.loads((self.out / "raw/found.json").read_text())
        self.assertEqual(found["names"], list(SERVERS))


if __name__ == "__main__":
    unittest.main(verbosity=2)
