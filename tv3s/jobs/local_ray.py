"""The Ray that `tv3s run` starts on this machine for one job, and nothing of it left behind.

A driver killed with SIGKILL never runs `ray.shutdown()`. Ray's GCS and raylet notice and
exit, but processes they started (the dashboard agent, the runtime-env agent) were seen
to stay, one set per killed run. So every local Ray is recorded in a registry folder (the
driver's PID and start time, and the Ray session folder), and each new start first reaps
the sessions whose driver is gone: their processes are found by the session folder in
their command line or among their open files (the agents retitle themselves
`ray::DashboardAgent`, but keep their logs in the session folder open); the folder is
unique to that session, so no other Ray on the machine is touched, and they are stopped
by PID, never by name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

REGISTRY_ENV = "TV3S_LOCAL_RAY_REGISTRY"


def registry() -> Path:
    """Where local sessions are recorded (one JSON file per running driver)."""
    return Path(os.environ.get(REGISTRY_ENV) or Path(tempfile.gettempdir()) / "tv3s-local-ray")


def start_local_ray(num_cpus: int | None, dashboard: bool) -> Path:
    """Reap what killed drivers left, start a loopback-only Ray, record it; returns the record."""
    import ray

    reap_orphans()
    # A Ray started for one job needs no network: every socket on loopback, and so no
    # token auth either (which would otherwise switch on once ~/.ray/auth_token exists).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=num_cpus, include_dashboard=dashboard, log_to_driver=False, logging_level=logging.WARNING)
    session = ray._private.worker._global_node.get_session_dir_path()  # no public API names it
    record = registry() / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    body = {"driver_pid": os.getpid(), "driver_started": _start_time(os.getpid()), "session_dir": session}
    record.write_text(json.dumps(body))
    return record


def stop_local_ray(record: Path) -> None:
    """Shut the local Ray down and forget its record."""
    import ray

    try:
        ray.shutdown()
    finally:
        record.unlink(missing_ok=True)


def reap_orphans(grace_s: float = 5.0) -> list[int]:
    """Stop the processes of every recorded session whose driver is gone; returns their PIDs."""
    reaped: list[int] = []
    for record in sorted(registry().glob("*.json")):
        try:
            body = json.loads(record.read_text())
        except (OSError, json.JSONDecodeError):
            record.unlink(missing_ok=True)
            continue
        if _start_time(body["driver_pid"]) == body["driver_started"]:
            continue  # that driver is still running its job
        for _ in range(3):  # again, for a process the dying ones started meanwhile
            pids = session_processes(body["session_dir"])
            if not pids:
                break
            _stop(pids, grace_s)
            reaped += pids
        record.unlink(missing_ok=True)
    return reaped


def session_processes(session_dir: str) -> list[int]:
    """PIDs of this user's processes that name `session_dir` in their command line or hold a
    file under it open."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid == os.getuid() and _uses(entry, session_dir):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _uses(proc: Path, session_dir: str) -> bool:
    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if session_dir in cmdline:
        return True
    prefix = session_dir.rstrip("/") + "/"
    for fd in (proc / "fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(prefix):
                return True
    return False


def _stop(pids: list[int], grace_s: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s  # SIGKILL takes effect when the process is next scheduled
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a PID's reuse apart), None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]) if fields[0] != "Z" else None
