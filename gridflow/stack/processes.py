"""PID-tracked launching of the embedded stack's processes.

Every process is started in its own session (process group) with ``GRIDFLOW_STACK_ID`` in its
environment. The environment is inherited by everything it forks, so :func:`marked_pids` finds a
service's children too (a JVM started by a shell script, say), and :meth:`Launcher.stop_all` leaves
nothing behind even when a pid file was lost. Each running process also has a pid file under
``<run_dir>/pids`` so that ``gridflow stack down`` in another shell can stop it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

STACK_ID_ENV = "GRIDFLOW_STACK_ID"


class StackError(RuntimeError):
    """A stack service could not be started or reached."""


@dataclass
class ManagedProcess:
    name: str
    pid: int
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_alive(self.pid)


def path_with_interpreter_first() -> str:
    """``$PATH`` with this interpreter's folder (the virtualenv's ``bin``) in front, once.

    Processes we start (Flink's Python workers, tools installed in the venv) must find the venv's
    ``python`` and scripts even when the shell that started us did not activate it."""
    interpreter_dir = str(Path(sys.executable).parent)
    rest = [part for part in os.environ.get("PATH", "").split(os.pathsep) if part and part != interpreter_dir]
    return os.pathsep.join([interpreter_dir, *rest])


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def claim_port(host: str, configured: int, key: str) -> int:
    """``configured`` if it is free (else a clear error naming the setting ``key``), or a free port if 0."""
    if configured == 0:
        return free_port(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the servers bind (SO_REUSEADDR): connections of a stopped server in TIME_WAIT do not block the
        # port, a process listening on it or holding it does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, configured))
        except OSError as exc:
            raise StackError(
                f"{key} = {configured}: {host}:{configured} is already in use ({exc.strerror}); "
                f"choose another port or 0 for any free port"
            ) from None
    return configured


def wait_for_port(host: str, port: int, timeout_s: float, process: ManagedProcess | None = None) -> None:
    """Wait until ``host:port`` accepts TCP connections (and the process has not died)."""
    wait_until(lambda: _port_open(host, port), timeout_s, f"{host}:{port} to accept connections", process)


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, process: ManagedProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and not process.alive():
            raise StackError(
                f"{process.name} exited while waiting for {what}; see {process.log_path}:\n{_tail(process.log_path)}"
            )
        if condition():
            return
        if time.monotonic() > deadline:
            hint = f"; see {process.log_path}:\n{_tail(process.log_path)}" if process else ""
            raise StackError(f"timed out after {timeout_s:.0f} s waiting for {what}{hint}")
        time.sleep(0.1)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def marked_pids(stack_id: str) -> list[int]:
    """Pids of live processes whose environment carries ``GRIDFLOW_STACK_ID=stack_id``."""
    needle = f"{STACK_ID_ENV}={stack_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and _pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


class Launcher:
    """Starts named processes for one stack and stops all of them, children included."""

    def __init__(self, run_dir: Path, stack_id: str):
        self.run_dir = Path(run_dir)
        self.stack_id = stack_id
        self.pid_dir = self.run_dir / "pids"
        self.log_dir = self.run_dir / "logs"
        self.processes: dict[str, ManagedProcess] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **(env or {}), STACK_ID_ENV: self.stack_id}
        with open(log_path, "ab") as log:
            try:
                popen = subprocess.Popen(
                    list(argv),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=full_env,
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                raise StackError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        process = ManagedProcess(name, popen.pid, list(argv), log_path, popen)
        self.processes[name] = process
        (self.pid_dir / f"{name}.pid").write_text(json.dumps({"pid": popen.pid, "argv": list(argv)}))
        return process

    def pid_of(self, name: str) -> int | None:
        """The live pid of ``name``: started by this launcher, or by another process for the same stack
        (its pid file, checked against the stack's mark so a reused pid is never signalled)."""
        process = self.processes.get(name)
        if process is not None:
            return process.pid if _pid_alive(process.pid) else None
        try:
            pid = int(json.loads((self.pid_dir / f"{name}.pid").read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        marked = f"{STACK_ID_ENV}={self.stack_id}".encode() in _environ(pid).split(b"\0")
        return pid if marked and _pid_alive(pid) else None

    def stop(self, name: str, timeout_s: float = 15.0) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            _terminate_group(process.pid, timeout_s)
            if process.popen is not None:
                process.popen.wait(timeout=timeout_s)
        (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)

    def kill(self, name: str) -> None:
        """Crash ``name`` and its children at once (SIGKILL to its process group), as a machine failure would."""
        process = self.processes.pop(name, None)
        if process is not None:
            try:
                os.killpg(os.getpgid(process.pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
            if process.popen is not None:
                process.popen.wait(timeout=30)
        (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)

    def stop_all(self, timeout_s: float = 15.0) -> None:
        """Stop every process of this stack: the tracked ones in reverse start order, then any stragglers."""
        for name in reversed(list(self.processes)):
            self.stop(name, timeout_s)
        for pid_file in self.pid_dir.glob("*.pid") if self.pid_dir.exists() else []:
            try:
                pid = int(json.loads(pid_file.read_text())["pid"])
            except (OSError, ValueError, KeyError, TypeError):
                pid = None
            if pid and self.stack_id.encode() in _environ(pid):
                _terminate_group(pid, timeout_s)
            pid_file.unlink(missing_ok=True)
        for pid in marked_pids(self.stack_id):
            _terminate_group(pid, timeout_s)
        leftovers = marked_pids(self.stack_id)
        if leftovers:
            raise StackError(f"processes of stack {self.stack_id} still running after stop: {leftovers}")


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _terminate_group(pid: int, timeout_s: float) -> None:
    """SIGTERM the process group led by ``pid`` (or the process alone), SIGKILL after ``timeout_s``."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    target_group = pgid == pid

    def send(sig: int) -> None:
        try:
            os.killpg(pgid, sig) if target_group else os.kill(pid, sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _pid_alive(pid):
        send(signal.SIGKILL)
        while _pid_alive(pid) and time.monotonic() < deadline + 5:
            _reap(pid)
            time.sleep(0.05)
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
