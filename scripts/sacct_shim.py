#!/usr/bin/env python3
"""A small ``sacct`` for a SLURM cluster without an accounting database (scripts/slurm_local.sh installs it).

Why: submitit learns the state of its jobs only from ``sacct -o JobID,State,NodeList --parsable2 -j ID``.
Without slurmdbd the real ``sacct`` fails, submitit logs "Bypassing sacct error" and keeps polling, and a
job that died without writing a result (``scancel``, a time limit, a memory kill) leaves the sweep waiting
forever.
This answers the same query from the two places a database-less cluster keeps job states: the controller's
memory (``scontrol -o show job``, every job until ``MinJobAge`` after it ends) and the job-completion log
(``JobCompType=jobcomp/filetxt``, every job that ended). Standard library only: it runs under any python3.

Supported: ``-j/--jobs ID[,ID]`` (repeatable; ``ID`` or ``ARRAYID_TASK``), ``-o/--format FIELD[,FIELD]``,
``-P/--parsable2``, ``-p/--parsable``, ``-n/--noheader``; other flags (``-X``, ``-a``, ``-S``, ...) are
accepted and ignored. Job steps (``ID.batch``) are never listed: there is no step record without a database.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterable

# sacct field -> the key holding it in scontrol's and jobcomp/filetxt's records (same names in both, mostly).
FIELDS = {
    "jobidraw": "JobId",
    "state": "JobState",
    "nodelist": "NodeList",
    "jobname": "JobName",
    "partition": "Partition",
    "exitcode": "ExitCode",
    "derivedexitcode": "DerivedExitCode",
    "start": "StartTime",
    "end": "EndTime",
    "submit": "SubmitTime",
    "timelimit": "TimeLimit",
    "user": "UserId",
    "workdir": "WorkDir",
    "reason": "Reason",
}
DEFAULT_FORMAT = "JobID,JobName,Partition,State,ExitCode"
_KEY = re.compile(r"\s(?=[A-Za-z][A-Za-z0-9_:/]*=)")  # a space that starts "Key=": fields of one record


def parse_record(line: str) -> dict[str, str]:
    """``Key=value Key=value ...`` (one ``scontrol -o`` line or one jobcomp line) -> dict (first key wins)."""
    record: dict[str, str] = {}
    for part in _KEY.split(" " + line.strip()):
        key, sep, value = part.partition("=")
        if sep and key and key not in record:
            record[key] = value
    if "Name" in record and "JobName" not in record:  # jobcomp/filetxt says Name=, scontrol JobName=
        record["JobName"] = record["Name"]
    return record


def job_id(record: dict[str, str]) -> str:
    """The id sacct shows: ``ARRAY_TASK`` for an array task, ``ARRAY_[2-3]`` for its pending rest."""
    array, task = record.get("ArrayJobId"), record.get("ArrayTaskId")
    if array and task:
        return f"{array}_{task}" if task.isdigit() else f"{array}_[{task}]"
    return record.get("JobId", "")


def live_jobs() -> list[dict[str, str]]:
    """Every job the controller still holds (running, pending, or ended less than MinJobAge ago)."""
    try:
        out = subprocess.run(
            ["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [parse_record(line) for line in out.splitlines() if line.startswith("JobId=")]


def finished_jobs(path: str | None) -> list[dict[str, str]]:
    """Every job the job-completion log recorded (a requeued job appears more than once: the last wins)."""
    if not path or not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        return [parse_record(line) for line in f if line.startswith("JobId=")]


def select(records: Iterable[dict[str, str]], wanted: list[str]) -> dict[str, dict[str, str]]:
    """Records by sacct id, those matching ``wanted`` (ids or array task ids; all when empty)."""
    by_id: dict[str, dict[str, str]] = {}
    for record in records:
        shown = job_id(record)
        ids = {record.get("JobId", ""), record.get("ArrayJobId", ""), shown}
        if not wanted or any(w in ids for w in wanted):
            by_id[shown] = record
    return by_id


def value(record: dict[str, str], field: str, shown: str) -> str:
    name = field.split("%")[0].lower()
    if name == "jobid":
        return shown
    raw = record.get(FIELDS.get(name, field.split("%")[0]), "")
    if name == "nodelist" and raw in ("", "(null)"):
        return "None assigned"
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sacct", description=__doc__.splitlines()[0], add_help=True)
    parser.add_argument("-j", "--jobs", action="append", default=[])
    parser.add_argument("-o", "--format", default=DEFAULT_FORMAT)
    parser.add_argument("-P", "--parsable2", action="store_true")
    parser.add_argument("-p", "--parsable", action="store_true")
    parser.add_argument("-n", "--noheader", action="store_true")
    parser.add_argument("--jobcomp", default=os.environ.get("SACCT_SHIM_JOBCOMP"), help="jobcomp/filetxt log")
    args, _ignored = parser.parse_known_args(argv)

    wanted = [j for arg in args.jobs for j in arg.split(",") if j]
    fields = [f for f in args.format.split(",") if f]
    rows = select(finished_jobs(args.jobcomp), wanted)
    rows.update(select(live_jobs(), wanted))  # the controller's view is the newer one

    table = [[value(record, f, shown) for f in fields] for shown, record in rows.items()]
    header = [f.split("%")[0] for f in fields]
    lines = [] if args.noheader else [header]
    lines += table
    if args.parsable2 or args.parsable:
        end = "|" if args.parsable and not args.parsable2 else ""
        sys.stdout.write("".join("|".join(row) + end + "\n" for row in lines))
    else:
        widths = [max([10, *(len(row[i]) for row in lines)]) for i in range(len(fields))]
        for row in lines:
            sys.stdout.write(" ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
