"""A full disk (issue 26), on a real small tmpfs in a user and mount namespace (``unshare``; skipped, with
the reason, where the machine does not allow one): the run fails in one line naming the file, nothing it
wrote before is lost or torn, and once there is space it resumes to the numbers of an uninterrupted run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST, REPO, TRAIN

from ssa_experiments.store.files import read_summary

pytestmark = pytest.mark.integration
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


def in_tmpfs(mount: Path, size: str, script: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``script`` (bash) in a new user and mount namespace, with a tmpfs of ``size`` mounted at ``mount``;
    the mount ends with the namespace."""
    mount.mkdir(parents=True, exist_ok=True)
    body = f"mount -t tmpfs -o size={size} tmpfs {mount} || exit 77\n{script}"
    return subprocess.run(
        [*UNSHARE, "bash", "-c", body], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


@pytest.fixture(scope="module")
def tmpfs_allowed(tmp_path_factory: pytest.TempPathFactory) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) on this machine: cannot mount a small tmpfs without privileges")
    probe = in_tmpfs(tmp_path_factory.mktemp("probe") / "m", "64k", "true", timeout=30)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        pytest.skip(f"this machine does not allow a tmpfs in a user namespace: {reason}")


def _reference(tmp_path: Path) -> list[str]:
    """The CLI arguments of the tests' run, after computing it on an ordinary disk (store ``ref``, its dense
    parent cached in ``cache`` for the runs on the tmpfs)."""
    args = [*FAST, "method=one_shot", f"parent.cache_dir={tmp_path / 'cache'}"]
    reference = subprocess.run(
        [sys.executable, *TRAIN, *args, f"store.root={tmp_path / 'ref'}", f"hydra.run.dir={tmp_path / 'j0'}"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr[-2000:]
    return args


def test_a_run_whose_disk_fills_fails_naming_the_file_and_resumes_to_the_same_numbers(
    tmpfs_allowed: None, tmp_path: Path
) -> None:
    driver = Path(__file__).with_name("disk_full_driver.py")
    done = in_tmpfs(tmp_path / "m", "1m", f"{sys.executable} {driver} {tmp_path / 'm'} {tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"rows_kept"' in done.stdout


def test_the_cli_on_a_full_store_says_so_in_one_line_exit_1_then_completes(
    tmpfs_allowed: None, tmp_path: Path
) -> None:
    """The store on a tmpfs with no byte left (the job directory and the parent cache elsewhere): the run
    cannot write its first epoch row; one line names the file, exit 1, no traceback. The same command once
    the space is freed completes, to the test accuracy of the same run on an ordinary disk."""
    mount, args = tmp_path / "m", _reference(tmp_path)
    cli = " ".join([sys.executable, *TRAIN, *args, f"store.root={mount / 'store'}"])
    script = f"""
head -c 100000000 /dev/zero > {mount}/filler 2>/dev/null
{cli} hydra.run.dir={tmp_path / "j1"} 2> {tmp_path}/full.err; echo "full=$?"
rm {mount}/filler
{cli} hydra.run.dir={tmp_path / "j2"} 2> {tmp_path}/freed.err; echo "freed=$?"
cp -r {mount}/store {tmp_path}/store
"""
    done = in_tmpfs(mount, "1m", script)
    assert "full=1" in done.stdout and "freed=0" in done.stdout, done.stdout + done.stderr
    err = (tmp_path / "full.err").read_text()
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "No space left on device (errno 28)" in errors[0], err[-2000:]
    assert "Traceback" not in err and str(mount / "store") in errors[0]
    (run_dir,) = [d for d in (tmp_path / "store" / "runs").iterdir() if d.is_dir()]
    (ref_dir,) = [d for d in (tmp_path / "ref" / "runs").iterdir() if d.is_dir()]
    assert run_dir.name == ref_dir.name  # the same run: the same store key
    assert read_summary(run_dir)["test_acc"] == read_summary(ref_dir)["test_acc"]


def test_a_multirun_whose_disk_fills_inside_a_run_exits_1_and_its_relaunch_completes(
    tmpfs_allowed: None, tmp_path: Path
) -> None:
    """12 KB left on the store's disk: the run's lock and first rows fit, its checkpoint does not. The sweep
    exits 1 naming the run; the relaunch, with the space freed, computes it to the reference's numbers."""
    mount, args = tmp_path / "m", _reference(tmp_path)
    cli = " ".join([sys.executable, *TRAIN, "-m", *args, "seed=0", f"store.root={mount / 'store'}"])
    script = f"""
head -c $(( $(df --output=avail -B1 {mount} | tail -1) - 12288 )) /dev/zero > {mount}/filler
{cli} hydra.sweep.dir={tmp_path / "s"} > {tmp_path}/full.out 2> {tmp_path}/full.err; echo "full=$?"
rm {mount}/filler
{cli} hydra.sweep.dir={tmp_path / "s"} > {tmp_path}/freed.out 2> {tmp_path}/freed.err; echo "freed=$?"
cp -r {mount}/store {tmp_path}/store
"""
    done = in_tmpfs(mount, "1m", script)
    assert "full=1" in done.stdout and "freed=0" in done.stdout, done.stdout + done.stderr
    full = (tmp_path / "full.out").read_text() + (tmp_path / "full.err").read_text()
    assert "No space left on device (errno 28)" in full and "runs: 0 completed" in full, full[-3000:]
    (run_dir,) = [d for d in (tmp_path / "store" / "runs").iterdir() if d.is_dir()]
    (ref_dir,) = [d for d in (tmp_path / "ref" / "runs").iterdir() if d.is_dir()]
    assert read_summary(run_dir)["test_acc"] == read_summary(ref_dir)["test_acc"]
