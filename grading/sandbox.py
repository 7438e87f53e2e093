"""Run ``grading.child`` on one notebook in a bubblewrap sandbox (Debian's ``bubblewrap``, as Flatpak uses).

The child, the kernel and everything they start:

* see a file system made for them, read-only: the system's ``/usr`` (programs, libraries, the
  data set in ``/usr/share/datasets``), a few files of ``/etc``, the Python installation and
  environment the grader runs from (wherever they are: a venv under ``/tmp``, conda, pyenv), the
  data folder ``$NIN_DATA_DIR`` if set, and the course's ``nin_utils`` and ``grading`` folders; a
  private ``/tmp`` of ``BOX_SIZE``; new ``/proc`` and ``/dev``. Not the rest of the course
  repository (solutions, tests, history), home folders, the submissions or the results;
* run in new user (uid 65534 inside), PID, network (loopback only), IPC and UTS namespaces: they
  see no other process and reach no network;
* die together: when the child ends, at the time limit (the grader kills bwrap) or when the grader
  dies (``--die-with-parent``), the PID namespace's first process ends and the kernel kills every
  process in the namespace, also those that left the session or cleared their environment.

The child then limits its own memory, file sizes and process count (``grading.child``). The result
comes back on a pipe, of which only ``RESULT_LIMIT`` bytes are read, and what the child prints on
another, of which ``OUTPUT_KEEP`` bytes are kept.

Without a working bubblewrap the grader refuses to run submissions unless told
``--allow-unsandboxed`` (``available``); then each runs as the current user, in a temporary folder
and its own session, which is killed at the end (a process that left the session can survive).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEPT = ("nin_utils", "grading")  # the only folders of the repository a submission sees
BOX_SIZE = 2**30  # bytes of the private /tmp (notebook, data set copy, kernel files)
OUTPUT_KEEP = 20_000  # bytes of the child's stdout/stderr kept for the report
RESULT_LIMIT = 2_000_000  # bytes of the result read back
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC = ("passwd", "group", "nsswitch.conf", "hosts", "localtime", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
       "alternatives", "fonts")


@dataclass
class Outcome:
    result: dict | None  # the child's result, or None when it wrote none
    seconds: float
    timed_out: bool
    returncode: int | None
    output_head: str  # the first OUTPUT_KEEP bytes the child printed
    output_bytes: int  # how many it printed in all


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def python_folders() -> list[Path]:
    """The folders this Python needs (installation, environment, site-packages and the paths their
    ``.pth`` files add), outermost first: not the script's folder or ``$PYTHONPATH``, which the child
    does not use. Of the repository only a virtual environment in it (a folder with a ``pyvenv.cfg``)
    is among them."""
    own = {sys.path[0], *os.environ.get("PYTHONPATH", "").split(os.pathsep)}
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages(),
                  *(p for p in sys.path if p and p not in own)}
    found = set()
    for candidate in candidates:
        path = Path(candidate).resolve()
        if not path.exists() or any(_inside(path, Path(s)) for s in SYSTEM):
            continue
        if _inside(path, ROOT):
            path = next((p for p in [path, *path.parents] if _inside(p, ROOT) and (p / "pyvenv.cfg").is_file()), None)
        if path is not None:
            found.add(path)
    return sorted(p for p in found if not any(q != p and _inside(p, q) for q in found))


def bwrap_command(notebook: Path, hidden: list[Path], command: list[str]) -> list[str]:
    """bwrap's arguments for ``command`` with ``notebook`` at /tmp/submission.ipynb; ``hidden``
    folders (and the repository) are covered wherever a kept folder would show them."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--uid", "65534", "--gid", "65534",
            "--proc", "/proc", "--dev", "/dev", "--size", str(BOX_SIZE), "--tmpfs", "/tmp"]
    for top in map(Path, SYSTEM):
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    args += [a for name in ETC for a in ("--ro-bind-try", f"/etc/{name}", f"/etc/{name}")]
    data = [Path(os.environ["NIN_DATA_DIR"]).resolve()] if os.environ.get("NIN_DATA_DIR") else []
    outer = [p for p in [*python_folders(), *data] if not any(_inside(p, h) for h in [ROOT, *hidden])]
    inner = [p for p in python_folders() if p not in outer] + [ROOT / name for name in KEPT]
    for path in outer:
        args += ["--ro-bind", str(path), str(path)]
    for path in [ROOT, *hidden]:  # a kept folder may hold them: a venv around the repository
        if any(_inside(path, p) for p in outer):
            args += ["--tmpfs", str(path)]
    for path in inner:
        args += ["--ro-bind", str(path), str(path)]
    return [*args, "--ro-bind", str(notebook), "/tmp/submission.ipynb", "--chdir", "/tmp", "--", *command]


@functools.cache
def available() -> str | None:
    """None when bubblewrap can sandbox a submission here, else why not."""
    if not shutil.which("bwrap"):
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    with tempfile.NamedTemporaryFile(suffix=".ipynb") as empty:
        command = bwrap_command(Path(empty.name), [], [sys.executable, "-c", "import grading.child, nin_utils"])
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                  env=child_environment("/tmp", {}))
        except (OSError, subprocess.SubprocessError) as error:
            return f"bwrap could not run ({error})"
    if done.returncode != 0:
        return f"bwrap failed here (user namespaces not permitted?): {done.stderr.strip()[-500:]}"
    return None


def child_environment(box: str, extra: dict[str, str]) -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": f"{box}/home",
        "TMPDIR": f"{box}/tmp",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "LANG": "C.UTF-8",
        "TQDM_DISABLE": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        "CUDA_VISIBLE_DEVICES": "",  # grading runs on the CPU
    }
    for name in ("NIN_DATA_DIR", "OMP_NUM_THREADS"):
        if name in os.environ:
            env[name] = os.environ[name]
    return {**env, **extra}


def _read_capped(stream, sink: dict, limit: int) -> None:
    while chunk := stream.read(65536):
        if len(sink["head"]) < limit:
            sink["head"] += chunk[: limit - len(sink["head"])]
        sink["total"] += len(chunk)


def run(notebook: bytes, workdir: Path, *, timeout: float, hidden: list[Path], env: dict[str, str],
        sandboxed: bool = True) -> Outcome:
    """Run ``grading.child`` on ``notebook`` (its bytes); ``sandboxed=False`` runs it unisolated."""
    box = Path(tempfile.mkdtemp(dir=workdir, prefix="box-"))
    result_read, result_write = os.pipe()
    try:
        (box / "submission.ipynb").write_bytes(notebook)
        inside = "/tmp" if sandboxed else str(box)
        child = [sys.executable, "-m", "grading.child", inside, str(result_write)]
        command = bwrap_command(box / "submission.ipynb", hidden, child) if sandboxed else child
        start = time.monotonic()
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, cwd=box, env=child_environment(inside, env),
                                       pass_fds=(result_write,), start_new_session=True)
        finally:
            os.close(result_write)  # the child holds it now: the result pipe ends when the child's side does
        output, result = {"head": b"", "total": 0}, {"head": b"", "total": 0}
        with os.fdopen(result_read, "rb") as results:
            readers = [threading.Thread(target=_read_capped, args=(stream, sink, limit), daemon=True)
                       for stream, sink, limit in ((process.stdout, output, OUTPUT_KEEP),
                                                   (results, result, RESULT_LIMIT))]
            for reader in readers:
                reader.start()
            try:
                process.wait(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            try:
                os.killpg(process.pid, signal.SIGKILL)  # bwrap (and with it the sandbox), or the unsandboxed session
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
            for reader in readers:
                reader.join(timeout=10)
        return Outcome(None if timed_out else _parse(result["head"]), time.monotonic() - start, timed_out,
                       process.returncode, output["head"].decode("utf-8", "replace"), output["total"])
    finally:
        shutil.rmtree(box, ignore_errors=True)


def _parse(data: bytes) -> dict | None:
    try:
        result = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return result if isinstance(result, dict) else None
