"""Run ``grading.child`` on one submission, isolated from the grader and from the other submissions.

With root (and ``unshare``/``setpriv``, util-linux), the child runs:

* as ``nobody``, with no capabilities and ``no_new_privs``;
* in new mount, PID and network namespaces: its ``/tmp`` is its own box (a size-limited
  tmpfs), ``/dev/shm`` and ``/var/tmp`` are empty; the course repository is replaced by an
  empty folder except the virtual environment, ``nin_utils`` and ``grading`` (read-only), so the
  instructor notebooks, tests and git history (the reference solutions) cannot be read; the
  submissions folder and the results folder are hidden the same way; it sees no other process
  and has only a loopback network;
* with a wall-clock limit: on expiry every process in its PID namespace is killed (the child
  sets its own resource limits: address space, no core files, file size, process count), and
  on the CPU only (``CUDA_VISIBLE_DEVICES`` empty).

Where namespaces are not permitted, root still drops to ``nobody`` if that user can run this
Python; if it cannot, the grader refuses unless told ``--allow-unsandboxed``. Without root the
child runs as the instructor, in a temporary folder, with the same limits but no privilege
drop and no namespaces. ``isolation()`` says which, and the report prints it.

Whatever the child prints is read through a pipe of which only the first ``OUTPUT_KEEP``
bytes are kept. The grader reads the child's ``result.json`` only after the child has ended.
"""

from __future__ import annotations

import json
import os
import shutil
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_USER = ("nobody", 65534, 65534)
BOX_SIZE = "1g"  # the child's /tmp (notebook, dataset copy, otter's work folder)
MARKER_ENV = "NIN_GRADE_RUN"  # a random value per child, to find its leftovers (_sweep)
OUTPUT_KEEP = 20_000  # bytes of the child's stdout/stderr kept for the report
RESULT_LIMIT = 1_000_000  # bytes of result.json read back

# Runs as root inside the new namespaces, then becomes nobody. $1 box, $2 repository,
# $3 python, $4 the repository's folders to keep (space-separated), $5 the interpreter's
# installation (sys.base_prefix) and $6 its first ancestor that nobody cannot enter (or ""),
# $7... folders to hide. What is kept is first bound aside on a staging tmpfs (at /dev/shm,
# emptied at the end): the repository or the interpreter may lie under /tmp, which the box then
# covers. The repository (and that private ancestor, e.g. /root for a pyenv Python) is covered
# by an empty tmpfs, and the kept folders are moved back, read-only.
NAMESPACE_SCRIPT = r'''
set -eu
box=$1 repo=$2 python=$3 keep=$4 base=$5 cover=$6; shift 6
stage=/dev/shm/.keep
mount -t tmpfs -o size=64k,mode=0700 tmpfs /dev/shm
mkdir "$stage"
kept=""
for name in $keep; do
    if [ -d "$repo/$name" ]; then
        mkdir "$stage/$name"; mount --bind "$repo/$name" "$stage/$name"; kept="$kept $name"
    fi
done
if [ -n "$cover" ]; then mkdir "$stage/.base"; mount --bind "$base" "$stage/.base"; fi
mount --bind "$box" /tmp
cd /tmp
if [ -n "$cover" ]; then
    mount -t tmpfs -o size=64k,mode=0755 tmpfs "$cover"
    mkdir -p "$base"; mount --move "$stage/.base" "$base"; mount -o remount,bind,ro "$base"
fi
mkdir -p "$repo"
mount -t tmpfs -o size=64k,mode=0755 tmpfs "$repo"
for name in $kept; do
    mkdir "$repo/$name"; mount --move "$stage/$name" "$repo/$name"
    mount -o remount,bind,ro "$repo/$name"
done
umount /dev/shm
for hidden in "$@"; do
    if [ -d "$hidden" ]; then mount -t tmpfs -o size=4k,mode=0000 tmpfs "$hidden"; fi
done
mount -t tmpfs -o size=64m tmpfs /dev/shm
if [ -d /var/tmp ]; then mount -t tmpfs -o size=16m tmpfs /var/tmp; fi
ip link set lo up
exec setpriv --reuid=@UID@ --regid=@GID@ --clear-groups --no-new-privs --inh-caps=-all \
    --bounding-set=-all -- "$python" -m grading.child /tmp
'''


@dataclass
class Outcome:
    result: dict | None  # the child's result.json, or None when it wrote none
    seconds: float
    timed_out: bool
    returncode: int | None
    output_head: str  # the first OUTPUT_KEEP bytes the child printed
    output_bytes: int  # how many it printed in all


def _probe(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=60, cwd="/",
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
                              ).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_ISOLATION: str | None = None


def isolation() -> str:
    """How submissions run here (``describe_isolation`` says it in words):

    ``"namespaces"`` (root, ``unshare`` works), ``"user"`` (root, only ``setpriv``), ``"root"``
    (root, but nobody cannot run this Python: no isolation at all) or ``"none"`` (not root).
    """
    global _ISOLATION
    if _ISOLATION is None:
        if os.geteuid() != 0:
            _ISOLATION = "none"
        elif shutil.which("setpriv") and shutil.which("unshare") and shutil.which("ip") and _probe(
                ["unshare", "--mount", "--pid", "--fork", "--net", "--kill-child", "sh", "-c",
                 "mount -t tmpfs tmpfs /tmp && ip link set lo up"]):
            _ISOLATION = "namespaces"
        elif shutil.which("setpriv") and not interpreter_cover()[1] and _probe(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                 "import grading.child, nin_utils, otter"]):
            _ISOLATION = "user"
        else:
            _ISOLATION = "root"
    return _ISOLATION


def describe_isolation() -> str:
    return {
        "namespaces": "each submission ran as nobody in its own mount/PID/network namespaces; "
                      "the course repository (but .venv, nin_utils, grading), the submissions and "
                      "the results were hidden from it",
        "user": "each submission ran as nobody (no namespaces: `unshare` or `ip` missing or not "
                "permitted); files readable by nobody, the course repository included, were readable",
        "root": "NOT ISOLATED: submissions ran as root (namespaces not permitted, and nobody cannot run "
                "this Python); only for trusted notebooks",
        "none": "not root: submissions ran as the current user, who can read everything you can; "
                "run the grader as root (or in a container) to isolate them",
    }[isolation()]


def kept_folders() -> list[str]:
    """Top-level folders of the repository the child needs: the package, the grader, the venv."""
    kept = ["nin_utils", "grading"]
    for prefix in (sys.prefix, str(Path(sys.executable).parent)):
        try:
            top = Path(prefix).resolve().relative_to(ROOT).parts[0]
        except (ValueError, IndexError):
            continue
        if top not in kept:
            kept.append(top)
    return kept


def interpreter_cover() -> tuple[str, str]:
    """``(sys.base_prefix, its first ancestor without o+x)``: a Python installed in a private home
    (pyenv in /root) is re-exposed alone, read-only, so that nobody can run it."""
    base = Path(sys.base_prefix).resolve()
    for folder in [*reversed(base.parents), base][1:]:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return str(base), str(folder) if folder != base else ""
    return str(base), ""


def child_environment(box_in_child: str, extra: dict[str, str]) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": f"{box_in_child}/home",
        "TMPDIR": f"{box_in_child}/tmp",
        "MPLCONFIGDIR": f"{box_in_child}/home/.matplotlib",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "LANG": "C.UTF-8",
        "TQDM_DISABLE": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        "CUDA_VISIBLE_DEVICES": "",  # grading runs on the CPU, like the baseline (batch.start_baseline)
    }
    for name in ("NIN_DATA_DIR", "OMP_NUM_THREADS"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    return env


def _read_capped(stream, sink: dict) -> None:
    while chunk := stream.read(65536):
        if sink["kept"] < OUTPUT_KEEP:
            sink["head"] += chunk[: OUTPUT_KEEP - sink["kept"]]
            sink["kept"] = len(sink["head"])
        sink["total"] += len(chunk)


def _read_result(path: Path) -> dict | None:
    """The child's result file: a regular file (no link, no FIFO), at most RESULT_LIMIT bytes of JSON."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        result = json.loads(os.read(fd, RESULT_LIMIT))
        return result if isinstance(result, dict) else None
    except (OSError, ValueError, RecursionError):
        return None
    finally:
        os.close(fd)


def _make_box(parent: Path) -> Path:
    """A fresh, empty box for one child: a tmpfs owned by nobody under namespaces, else a folder."""
    box = Path(tempfile.mkdtemp(dir=parent, prefix="box-"))
    if isolation() == "namespaces":
        _, uid, gid = SANDBOX_USER
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={BOX_SIZE},mode=0700,uid={uid},gid={gid}",
                        "tmpfs", str(box)], check=True)
    return box  # mkdtemp made it 0700; run() gives it to nobody


def _remove_box(box: Path) -> None:
    if isolation() == "namespaces":
        subprocess.run(["umount", "-l", str(box)], check=False)
    shutil.rmtree(box, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (field 4 of /proc/PID/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the child's process group; first, under namespaces, the PID namespace's first process
    (``unshare``'s child): that ends the whole namespace, and ``unshare`` reaps it."""
    if isolation() == "namespaces" and process.poll() is None:
        for child in _children(process.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _sweep(marker: str) -> None:
    """Kill what a child left behind outside its session (no PID namespace to end them all):
    every process whose environment still holds ``marker``."""
    needle = f"{MARKER_ENV}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def run(notebook: bytes, autograder: Path, workdir: Path, *, timeout: float, hidden: list[Path],
        env: dict[str, str]) -> Outcome:
    """Grade ``notebook`` (the bytes of a notebook) in a fresh box under ``workdir``."""
    box = _make_box(workdir)
    try:
        uid, gid = SANDBOX_USER[1:]
        inside = "/tmp" if isolation() == "namespaces" else str(box)
        for sub in ("home", "tmp"):
            (box / sub).mkdir()
        (box / "submission.ipynb").write_bytes(notebook)
        shutil.copy(autograder, box / "autograder.zip")
        if isolation() != "none":
            for path in [box, *box.rglob("*")]:
                os.chown(path, uid, gid)
        python = sys.executable
        if isolation() == "namespaces":
            script = NAMESPACE_SCRIPT.replace("@UID@", str(uid)).replace("@GID@", str(gid))
            command = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--net", "--kill-child",
                       "--propagation", "private", "bash", "-c", script, "grade-sandbox", str(box),
                       str(ROOT), python, " ".join(kept_folders()), *interpreter_cover(),
                       *[str(p) for p in hidden]]
        elif isolation() == "user":
            command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--no-new-privs",
                       "--inh-caps=-all", "--", python, "-m", "grading.child", inside]
        else:
            command = [python, "-m", "grading.child", inside]
        sink = {"head": b"", "kept": 0, "total": 0}
        marker = secrets.token_hex(8)
        start = time.monotonic()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, cwd=box,
                                   env=child_environment(inside, {**env, MARKER_ENV: marker}),
                                   start_new_session=True)
        reader = threading.Thread(target=_read_capped, args=(process.stdout, sink), daemon=True)
        reader.start()
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        _kill_group(process)  # also any process the child left behind in its session
        process.wait()
        if isolation() != "namespaces":  # there, the PID namespace ended with the child
            _sweep(marker)
        reader.join(timeout=10)
        seconds = time.monotonic() - start
        result = None if timed_out else _read_result(box / "result.json")
        return Outcome(result, seconds, timed_out, process.returncode,
                       sink["head"].decode("utf-8", "replace"), sink["total"])
    finally:
        _remove_box(box)
