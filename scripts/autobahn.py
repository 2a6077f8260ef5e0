#!/usr/bin/env python3
"""Autobahn TestSuite conformance run for wsecho, driven by kosoku's Python API.

Normally started by scripts/autobahn.sh, which makes the virtualenv with the
pinned kosoku and builds the server; see autobahn/README.md.

Each case runs as its own `kosoku.run_fuzzingclient(url, [case])` call under
`asyncio.wait_for`, a few at a time, so one hanging case is recorded as TIMEOUT
instead of hanging the run (kosoku 0.1.0 has no opening-handshake timeout and
writes its own report only when the whole run ends). The run is judged from the
per-case `behavior` / `behaviorClose` / `remoteCloseCode` that kosoku's
index.json holds, against SPEC 1.2 and autobahn/expected.json.

Exit status: 0 pass, 1 conformance failure (or a refused --update-expected),
2 the harness could not run (bad arguments, server did not start, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import importlib.metadata
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
KOSOKU_VERSION = "0.1.0"  # keep in step with KOSOKU_VERSION in scripts/autobahn.sh

# SPEC 1.2 "Conformance".
# None since wsecho reads frames itself: invalid UTF-8 inside one chopped-up
# frame (6.4.3-4) fails fast, so NON-STRICT is a regression everywhere.
NON_STRICT_ALLOWED: tuple[str, ...] = ()
ACCEPTABLE_CLOSE = ("OK", "INFORMATIONAL")

# Outcomes the harness records itself; kosoku never reports these.
TIMEOUT = "TIMEOUT"
NOT_RUN = "NOT RUN"
HARNESS_ERROR = "ERROR"  # same label kosoku uses for a case it could not run

SUMMARY_ALWAYS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")


def say(msg: str) -> None:
    print(f"autobahn: {msg}", flush=True)


def step(msg: str) -> None:
    say(f"step: {msg}")


class HarnessError(Exception):
    """The run could not be carried out (exit 2)."""


# --------------------------------------------------------------------------- rules


def spec_allowed(case_id: str) -> tuple[str, ...]:
    """The `behavior` values SPEC 1.2 accepts for a case."""
    if case_id in NON_STRICT_ALLOWED:
        return ("OK", "NON-STRICT")
    return ("OK", "INFORMATIONAL")


def as_set(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def fmt_set(value: str | list[str]) -> str:
    return "|".join(as_set(value))


def rule_problems(case_id: str, got: dict) -> list[str]:
    """SPEC violations of one observed outcome, independent of expected.json."""
    problems = []
    behavior, close = got["behavior"], got["behaviorClose"]
    if behavior == TIMEOUT:
        problems.append(f"timed out ({got.get('note', '')})")
    elif behavior == NOT_RUN:
        problems.append(f"not run ({got.get('note', '')})")
    elif behavior not in spec_allowed(case_id):
        problems.append(f"behavior {behavior} (SPEC allows {fmt_set(list(spec_allowed(case_id)))})")
    if behavior not in (TIMEOUT, NOT_RUN) and close not in ACCEPTABLE_CLOSE:
        problems.append(f"behaviorClose {close}")
    return problems


def validate_expected(cases: dict) -> list[str]:
    """Entries of expected.json that would accept something SPEC 1.2 does not."""
    errors = []
    for case_id, exp in cases.items():
        bad_b = [b for b in as_set(exp["behavior"]) if b not in spec_allowed(case_id)]
        bad_c = [c for c in as_set(exp["behaviorClose"]) if c not in ACCEPTABLE_CLOSE]
        if bad_b:
            errors.append(f"{case_id}: behavior {fmt_set(bad_b)} is not allowed by SPEC 1.2")
        if bad_c:
            errors.append(f"{case_id}: behaviorClose {fmt_set(bad_c)} is not acceptable")
    return errors


# --------------------------------------------------------------------------- expected.json


def load_expected(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError(f"{path} does not exist (make it with --update-expected)")
    except ValueError as e:
        raise HarnessError(f"{path}: invalid JSON: {e}")
    cases = data.get("cases")
    if not isinstance(cases, dict):
        raise HarnessError(f"{path}: no \"cases\" object")
    for case_id, exp in cases.items():
        if not isinstance(exp, dict) or "behavior" not in exp or "behaviorClose" not in exp:
            raise HarnessError(f"{path}: case {case_id}: needs behavior and behaviorClose")
    if data.get("kosoku") != KOSOKU_VERSION:
        say(f"warning: {path} was made with kosoku {data.get('kosoku')}, running {KOSOKU_VERSION}")
    return cases


def case_sort_key(case_id: str) -> list[int]:
    return [int(p) for p in case_id.split(".")]


def write_expected(path: Path, cases: dict) -> None:
    """One case per line, so that a change of outcome is a one-line diff."""
    lines = [
        "{",
        '  "about": "Expected Autobahn outcome of each case for wsecho (SPEC 1.2 Conformance), '
        "checked by scripts/autobahn.sh. A list means any of these is accepted. "
        'Regenerate with: scripts/autobahn.sh --update-expected",',
        f'  "kosoku": "{KOSOKU_VERSION}",',
        '  "cases": {',
    ]
    ids = sorted(cases, key=case_sort_key)
    for i, case_id in enumerate(ids):
        entry = json.dumps(cases[case_id], separators=(", ", ": "))
        lines.append(f'    "{case_id}": {entry}' + ("," if i + 1 < len(ids) else ""))
    lines += ["  }", "}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


def expectation_from(case_id: str, got: dict) -> dict:
    behavior = got["behavior"]
    if case_id in NON_STRICT_ALLOWED and behavior in spec_allowed(case_id):
        behavior = list(spec_allowed(case_id))  # SPEC accepts either here
    return {"behavior": behavior, "behaviorClose": got["behaviorClose"]}


# --------------------------------------------------------------------------- server


def check_loopback(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise HarnessError(f"--url {url!r}: scheme must be ws:// or wss://")
    host = parts.hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise HarnessError(f"--url {url!r}: only loopback hosts (127.0.0.0/8, ::1, localhost) are allowed")


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The server under test, run as a child process on a free loopback port."""

    def __init__(self, binary: Path, extra_args: list[str], log_path: Path, startup_timeout: float):
        self.binary = binary
        self.extra_args = extra_args
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.stopping = False

    def start(self) -> str:
        if not os.access(self.binary, os.X_OK):
            raise HarnessError(f"server binary {self.binary} does not exist or is not executable")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")  # this run's log only
        # A port picked free can be taken again before the server binds it: retry.
        for attempt in range(3):
            self.port = free_loopback_port()
            cmd = [str(self.binary), "--listen", f"127.0.0.1:{self.port}", *self.extra_args]
            with open(self.log_path, "ab") as log:
                log.write(f"==> {' '.join(cmd)}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            say(f"server pid {self.proc.pid}: {' '.join(cmd)} (log: {rel(self.log_path)})")
            if self._wait_ready():
                return f"ws://127.0.0.1:{self.port}/"
            if self.proc.poll() is None:
                self.stop()
                break
            say(f"server {exit_text(self.proc.returncode)} during startup (attempt {attempt + 1})")
        raise HarnessError(f"server did not start listening; last lines of {rel(self.log_path)}:\n{self.log_tail()}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        say(f"server not listening after {self.startup_timeout:.0f}s")
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> str:
        """SIGTERM (graceful shutdown), then SIGKILL after `grace` seconds."""
        if self.proc is None:
            return "not started"
        self.stopping = True
        if self.proc.poll() is not None:
            return f"had already {exit_text(self.proc.returncode)}"
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=grace)
            return "stopped by SIGTERM" if status == -signal.SIGTERM else f"{exit_text(status)} after SIGTERM"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return f"did not exit within {grace:.0f}s of SIGTERM; killed"

    def log_tail(self, n: int = 10) -> str:
        try:
            return "\n".join("    | " + line for line in self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def exit_text(status: int) -> str:
    if status < 0:
        try:
            return f"exited on {signal.Signals(-status).name}"
        except ValueError:
            return f"exited on signal {-status}"
    return f"exited with status {status}"


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- running


async def run_one(kosoku, url: str, case_id: str, timeout: float) -> tuple[dict, object | None]:
    """One case in its own kosoku run. Returns (index.json-style entry, CaseResult)."""
    t0 = time.monotonic()
    try:
        results = await asyncio.wait_for(
            kosoku.run_fuzzingclient(url, [case_id], None, concurrency=1), timeout
        )
    except kosoku.FailureError as failure:  # raised whenever the case did not pass
        results = failure.results
    except asyncio.TimeoutError:
        # Cancelling does not stop kosoku's native task: its connection stays
        # open in the background until this process exits.
        note = f"no verdict within {timeout:g}s"
        return {"behavior": TIMEOUT, "behaviorClose": TIMEOUT, "remoteCloseCode": None, "note": note}, None
    except Exception as e:  # noqa: BLE001 - recorded as the case's outcome
        note = f"kosoku raised {type(e).__name__}: {e}"
        return {"behavior": HARNESS_ERROR, "behaviorClose": HARNESS_ERROR, "remoteCloseCode": None, "note": note}, None
    wall = time.monotonic() - t0
    mine = [r for r in results if r.case_id == case_id]
    if len(mine) != 1:
        note = f"kosoku returned {len(results)} results ({[r.case_id for r in results]}) for case {case_id}"
        return {"behavior": HARNESS_ERROR, "behaviorClose": HARNESS_ERROR, "remoteCloseCode": None, "note": note}, None
    r = mine[0]
    entry = {
        "behavior": r.behavior.value,
        "behaviorClose": r.behavior_close.value,
        "remoteCloseCode": r.remote_close_code,
        "duration": r.duration,  # ms, as kosoku measured it
        "wallTime": round(wall, 3),
        "result": r.result,
        "resultClose": r.result_close,
    }
    return entry, r


async def run_cases(kosoku, url: str, case_ids: list[str], concurrency: int, case_timeout: float,
                    deadline: float, server: Server | None) -> tuple[dict, dict]:
    entries: dict[str, dict] = {}
    raw: dict[str, object] = {}
    pending = iter(case_ids)
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    done = 0

    async def worker() -> None:
        nonlocal done
        for case_id in pending:  # shared iterator: each case is taken by one worker
            if server is not None and not server.alive():
                entries[case_id] = {"behavior": NOT_RUN, "behaviorClose": NOT_RUN,
                                    "remoteCloseCode": None, "note": "server process exited"}
            elif loop.time() >= end:
                entries[case_id] = {"behavior": NOT_RUN, "behaviorClose": NOT_RUN,
                                    "remoteCloseCode": None, "note": f"run deadline of {deadline:g}s passed"}
            else:
                entries[case_id], result = await run_one(kosoku, url, case_id, case_timeout)
                if result is not None:
                    raw[case_id] = result
            done += 1

    async def progress() -> None:  # a sign of life on a slow run
        while True:
            await asyncio.sleep(5)
            say(f"  {done}/{len(case_ids)} cases done")

    ticker = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    finally:
        ticker.cancel()
    return entries, raw


def case_detail(kosoku_report, result) -> dict:
    """kosoku's full per-case report (received/expected events, wire log)."""
    if kosoku_report is not None:
        try:
            return kosoku_report.case_to_dict(result)
        except Exception as e:  # noqa: BLE001 - private API, best effort
            return {"error": f"case_to_dict failed: {e}"}
    return {}


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="autobahn.py",
        description="Run the Autobahn TestSuite (kosoku) against wsecho and judge it by SPEC 1.2.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--server-bin", type=Path, help="server binary to start (takes --listen 127.0.0.1:PORT)")
    target.add_argument("--url", help="ws:// URL of an already-running loopback server; none is started")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the server binary (repeatable)")
    p.add_argument("--expected", type=Path, default=REPO / "autobahn" / "expected.json")
    p.add_argument("--results", type=Path, default=REPO / "target" / "autobahn" / "results.json",
                   help="where to write every case's outcome")
    p.add_argument("--update-expected", action="store_true",
                   help="rewrite --expected from this run (refused if the run breaks a SPEC rule)")
    p.add_argument("--cases", action="append", metavar="GLOB", help="run only these case ids/globs (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="skip these case ids/globs (repeatable)")
    p.add_argument("--concurrency", type=int, default=4, help="cases run at once")
    p.add_argument("--case-timeout", type=float, default=120.0, help="seconds one case may take")
    p.add_argument("--deadline", type=float, default=480.0,
                   help="seconds after which no further case is started (the rest count as NOT RUN)")
    p.add_argument("--startup-timeout", type=float, default=30.0, help="seconds for the server to start listening")
    p.add_argument("--kosoku-report", type=Path, metavar="DIR",
                   help="also write kosoku's own HTML/JSON report (index.json, index.html) into DIR")
    return p.parse_args(argv)


def select_cases(all_ids: list[str], include: list[str] | None, exclude: list[str] | None) -> list[str]:
    ids = [c for c in all_ids if not include or any(fnmatch.fnmatchcase(c, g) for g in include)]
    return [c for c in ids if not exclude or not any(fnmatch.fnmatchcase(c, g) for g in exclude)]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()

    step(f"load kosoku (pinned {KOSOKU_VERSION})")
    try:
        import kosoku
        import kosoku.cases
    except ImportError as e:
        raise HarnessError(f"cannot import kosoku ({e}); run scripts/autobahn.sh, which installs it")
    version = importlib.metadata.version("kosoku")
    if version != KOSOKU_VERSION:
        raise HarnessError(f"kosoku {version} is installed, this harness is pinned to {KOSOKU_VERSION}")
    try:
        from kosoku import _report as kosoku_report  # private: only for the optional detail output
    except ImportError:
        kosoku_report = None

    all_ids = sorted(kosoku.cases.CASES, key=case_sort_key)
    case_ids = select_cases(all_ids, args.cases, args.exclude)
    if not case_ids:
        raise HarnessError("no case selected")
    partial = len(case_ids) != len(all_ids)

    expected: dict = {}
    if args.expected.exists() or not args.update_expected:
        step(f"read expected results {rel(args.expected)}")
        expected = load_expected(args.expected)
        bad = validate_expected(expected)
        for line in bad:
            say(f"  expected.json breaks SPEC: {line}")
        if bad and not args.update_expected:  # an update replaces the bad entries
            raise HarnessError(f"{rel(args.expected)} accepts outcomes that SPEC 1.2 does not ({len(bad)} entries)")

    server: Server | None = None
    server_status = "not started (--url)"
    if args.url:
        check_loopback(args.url)
        url = args.url
    else:
        step(f"start server {args.server_bin}")
        server = Server(args.server_bin, args.server_arg,
                        args.results.parent / "server.log", args.startup_timeout)
    try:
        if server is not None:
            url = server.start()
        step(f"run {len(case_ids)} cases against {url} "
             f"(concurrency {args.concurrency}, {args.case_timeout:g}s per case, deadline {args.deadline:g}s)")
        t_run = time.monotonic()
        entries, raw = asyncio.run(run_cases(kosoku, url, case_ids, args.concurrency,
                                             args.case_timeout, args.deadline, server))
        run_seconds = time.monotonic() - t_run
        server_died = server is not None and not server.alive()
    finally:
        if server is not None:
            step("stop server")
            server_status = server.stop()
            say(f"server {server_status}")

    step("judge results")
    problems: dict[str, list[str]] = {}
    for case_id in case_ids:
        got = entries[case_id]
        plist = rule_problems(case_id, got)
        exp = expected.get(case_id)
        if exp is None:
            if not args.update_expected:
                plist.append("no expected outcome in expected.json")
        elif got["behavior"] not in as_set(exp["behavior"]) or got["behaviorClose"] not in as_set(exp["behaviorClose"]):
            plist.append("differs from expected")
        got["expected"] = exp
        if plist:
            problems[case_id] = plist
        got["problems"] = plist
    if not partial:
        for case_id in sorted(set(expected) - set(case_ids), key=case_sort_key):
            problems[case_id] = ["in expected.json but not a kosoku case"]
    if server_died:
        problems["server"] = [f"server process exited during the run; see {rel(server.log_path)}:\n{server.log_tail()}"]

    counts = Counter(entries[c]["behavior"] for c in case_ids)
    parts = [f"{counts.pop(k, 0)} {k}" for k in SUMMARY_ALWAYS]
    parts.append(f"{counts.pop(TIMEOUT, 0)} TIMED OUT")
    parts += [f"{n} {k}" for k, n in sorted(counts.items())]  # ERROR, NOT RUN, anything unforeseen
    summary = f"autobahn: {len(case_ids)} cases: {', '.join(parts)} ({run_seconds:.1f}s)"

    report = {
        "kosoku": KOSOKU_VERSION,
        "url": url,
        "server": str(args.server_bin) if args.server_bin else None,
        "serverStop": server_status,
        "selection": {"cases": args.cases, "exclude": args.exclude},
        "seconds": round(run_seconds, 2),
        "summary": summary.removeprefix("autobahn: "),
        "pass": not problems,
        "problems": problems,
        "cases": {c: entries[c] for c in case_ids},
        # kosoku's full report for each case with a problem: events and wire log.
        "details": {c: case_detail(kosoku_report, raw[c]) for c in problems if c in raw},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=1, default=str) + "\n")

    if args.kosoku_report:
        if kosoku_report is None:
            say("warning: kosoku._report not importable; no kosoku report written")
        else:
            kosoku_report.write_reports([raw[c] for c in case_ids if c in raw], str(args.kosoku_report))
            say(f"kosoku report in {rel(args.kosoku_report)}/index.html")

    print(summary, flush=True)
    not_run = [c for c in problems if c in entries and entries[c]["behavior"] == NOT_RUN]
    if not_run:
        notes = sorted({entries[c]["note"] for c in not_run})
        say(f"  {len(not_run)} cases not run ({'; '.join(notes)}): {', '.join(not_run[:5])}"
            + (f" ... {not_run[-1]}" if len(not_run) > 5 else ""))
    for case_id, plist in problems.items():
        got = entries.get(case_id)
        if case_id in not_run:
            continue
        if got is None:
            say(f"  {case_id}: {'; '.join(plist)}")
            continue
        exp = got.get("expected")
        exp_s = f"{fmt_set(exp['behavior'])}/{fmt_set(exp['behaviorClose'])}" if exp else "none"
        code = got.get("remoteCloseCode")
        code_s = f" (close code {code})" if code is not None else ""
        say(f"  {case_id}: got {got['behavior']}/{got['behaviorClose']}{code_s}, "
            f"expected {exp_s}: {'; '.join(plist)}")
        why = []
        if got["behavior"] not in ("OK", TIMEOUT, NOT_RUN):
            why.append(got.get("result") or got.get("note"))
        if got["behaviorClose"] not in (*ACCEPTABLE_CLOSE, TIMEOUT, NOT_RUN, HARNESS_ERROR):
            why.append(got.get("resultClose"))
        for text in dict.fromkeys(filter(None, why)):  # kosoku often says the same thing twice
            say(f"      {text}")
    say(f"per-case results: {rel(args.results)}")

    rc = 1 if problems else 0
    if args.update_expected:
        rc = update_expected(args, expected, entries, case_ids, problems, partial)

    say(("PASS" if rc == 0 else "FAIL") + f" ({time.monotonic() - t_start:.1f}s in all)")
    return rc


def update_expected(args, expected: dict, entries: dict, case_ids: list[str], problems: dict, partial: bool) -> int:
    step(f"update {rel(args.expected)}")
    new = dict(expected) if partial else {}
    for case_id in case_ids:
        new[case_id] = expectation_from(case_id, entries[case_id])
    blocking = [c for c in case_ids if rule_problems(c, entries[c])]
    if "server" in problems:
        blocking.append("server")
    if blocking:
        candidate = args.results.parent / "expected.candidate.json"
        write_expected(candidate, new)
        say(f"not updating {rel(args.expected)}: {len(blocking)} case(s) break a SPEC rule "
            f"(an expectation cannot record a failure); what this run would have written: {rel(candidate)}")
        return 1
    write_expected(args.expected, new)
    changed = sorted((c for c in new if expected.get(c) != new[c]), key=case_sort_key)
    say(f"wrote {len(new)} cases to {rel(args.expected)} ({len(changed)} changed)")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup (stop the server)
    try:
        code = main(sys.argv[1:])
    except HarnessError as e:
        say(f"error: {e}")
        code = 2
    except KeyboardInterrupt:
        say("interrupted")
        code = 130
    except SystemExit as e:  # SIGTERM
        say("terminated")
        code = e.code if isinstance(e.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Timed-out cases leave kosoku's native tasks running; don't wait for them.
    os._exit(code)
