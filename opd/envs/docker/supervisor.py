"""The in-container half of the Docker sandbox: runs one request, prints one JSON reply.

The host never runs a model's command with a bare ``docker exec``: it runs
``python3 -I -S -c <this file's source>`` as the unprivileged sandbox user and
sends one request on stdin (a decimal length line, then that many bytes of
JSON). Shipping the source with each exec means any image with a ``python3``
works and the host and the container can never disagree on the protocol.

Why a supervisor at all: ``docker exec`` cannot kill what it started on a
timeout (killing the exec's client connection leaves the process running), and
it streams unbounded output. Here the command runs in its own session and
process group, which is SIGKILLed at the deadline and again when the command
exits (so ``cmd &`` does not outlive its exec); output beyond the cap is
drained and counted, never kept. ``reset`` kills every process of the sandbox
user (``kill(-1)``, which spares the caller and PID 1) and empties the writable
mounts.

Standard library only, Python 3.9+: it runs on whatever python3 the image has.
"""

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

PROTOCOL = 1
WRITABLE_DIRS = ("/work", "/tmp", "/dev/shm", "/dev/mqueue")  # everything a command can leave state in
DRAIN_AFTER_EXIT_S = 0.2  # how long to wait for output still buffered when the command has exited


def _read_request():
    header = sys.stdin.buffer.readline()
    size = int(header.decode("ascii").strip())
    return json.loads(sys.stdin.buffer.read(size).decode("utf-8"))


def _reply(obj):
    sys.stdout.write(json.dumps(obj))
    sys.stdout.flush()


def _harden_child():
    # The command, not this supervisor, is what the kernel's OOM killer should pick.
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def _kill_group(proc):
    """SIGKILL the command's group, then wait (up to 2 s) until every member is reaped.

    Zombies still count against pids_limit: returning earlier would let the next command fail to start.
    We reap the command itself; PID 1 (tini) reaps its orphaned children.
    """
    give_up = time.monotonic() + 2.0
    while time.monotonic() < give_up:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        proc.poll()
        time.sleep(0.005)


def _feed(pipe, data):
    try:
        pipe.write(data)
    except (BrokenPipeError, OSError):
        pass  # the command stopped reading; that is its business
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


def do_exec(req):
    max_bytes = int(req["max_bytes"])
    timeout_s = float(req["timeout_s"])
    stdin = req.get("stdin")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/work", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    env.update(req.get("env") or {})
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            req["argv"],
            cwd=req.get("cwd") or "/work",
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session and process group: one killpg reaches its children
            preexec_fn=_harden_child,
        )
    except OSError as exc:
        return {"v": PROTOCOL, "exit_code": 127, "timed_out": False, "output": _b64(str(exc).encode()), "dropped": 0}
    if stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin.encode("utf-8")), daemon=True).start()
    kept, dropped, timed_out = _collect(proc, started + timeout_s, max_bytes)
    return {"v": PROTOCOL, "exit_code": proc.returncode, "timed_out": timed_out, "output": _b64(kept), "dropped": dropped}


def _collect(proc, deadline, max_bytes):
    """Read the command's output until it exits (or the deadline kills its group); keep ``max_bytes``, count the rest."""
    kept, dropped, timed_out = bytearray(), 0, False
    exited_at, fd, open_fds = None, proc.stdout.fileno(), [proc.stdout.fileno()]
    while True:
        now = time.monotonic()
        if exited_at is None and proc.poll() is not None:
            exited_at = now
            _kill_group(proc)  # background children die with their exec
        if exited_at is None and now >= deadline:
            timed_out = True
            _kill_group(proc)
            proc.wait()
            exited_at = time.monotonic()
        if exited_at is not None and (not open_fds or time.monotonic() - exited_at > DRAIN_AFTER_EXIT_S):
            break  # done; or something outside the group still holds the pipe open: stop listening
        if not open_fds:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, min(0.05, deadline - now)))
            continue
        ready, _, _ = select.select(open_fds, [], [], 0.05)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            open_fds = []  # EOF; the command may still run (it closed its stdout), so keep watching the clock
            continue
        room = max_bytes - len(kept)
        kept += chunk[:room]
        dropped += max(0, len(chunk) - room)
    proc.stdout.close()
    return bytes(kept), dropped, timed_out


def do_read(req):
    path = os.path.join("/work", req["path"])
    max_bytes = int(req["max_bytes"])
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        return {"v": PROTOCOL, "error": f"{req['path']}: {exc.strerror or exc}"}
    return {"v": PROTOCOL, "content": _b64(data[:max_bytes]), "truncated": len(data) > max_bytes}


def do_write(req):
    for item in req["files"]:
        path = os.path.join("/work", item["path"])
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "wb") as f:
                f.write(base64.b64decode(item["content"]))
        except OSError as exc:
            return {"v": PROTOCOL, "error": f"{item['path']}: {exc.strerror or exc}"}
    return {"v": PROTOCOL, "written": len(req["files"])}


def do_reset(req):
    # kill(-1) signals every process this user may signal except this one and PID 1; repeat until none is
    # left, because a fork bomb can fork between two passes (kill(-1) itself reports success regardless).
    for _ in range(100):
        os.kill(-1, signal.SIGKILL)
        if not _own_processes():
            break
        time.sleep(0.01)
    for top in WRITABLE_DIRS:
        if not os.path.isdir(top):
            continue
        for name in os.listdir(top):
            path = os.path.join(top, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    _make_writable(path)
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except OSError:
                pass  # reported below as left over
    return {"v": PROTOCOL, "leftover_processes": _own_processes(), "leftover_files": _leftover_files()}


def _make_writable(root):
    # A command may chmod its directories read-only to make them undeletable.
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, name), 0o700)
    os.chmod(root, 0o700)


def _own_processes():
    """Live processes of this user other than this one (zombies are dead; PID 1 reaps them)."""
    me, uid, found = os.getpid(), os.getuid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat("/proc/" + entry).st_uid != uid:
                continue
            with open("/proc/" + entry + "/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # exited while we looked
        if state not in ("Z", "X"):
            found.append(int(entry))
    return found


def _leftover_files():
    return [os.path.join(top, name) for top in WRITABLE_DIRS if os.path.isdir(top) for name in os.listdir(top)]


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def main():
    try:
        # Nothing else of this user may open this process's stdout through /proc and forge a reply.
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:
        pass
    req = _read_request()
    handlers = {"exec": do_exec, "read": do_read, "write": do_write, "reset": do_reset, "ping": lambda r: {"v": PROTOCOL}}
    _reply(handlers[req["op"]](req))


if __name__ == "__main__":
    main()
