"""The in-container half of the Docker sandbox: runs requests, prints JSON replies.

The host never runs a model's command with a bare ``docker exec``: it runs
``python3 -I -S -c <this file's source> serve`` as the unprivileged sandbox
user once per container and keeps that exec's stdin and stdout open; each
request is a decimal length line and that many bytes of JSON, and so is each
reply. One process serving many requests spares two Python start-ups per call
(a ``docker exec`` of a fresh supervisor per call cost 0.2 s). Without ``serve``
it answers one request with a bare JSON reply and exits (``run_request``).
Shipping the source with the exec means any image with a ``python3`` works and
the host and the container can never disagree on the protocol.

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
import errno
import json
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time

PROTOCOL = 1
WRITABLE_DIRS = ("/work", "/tmp", "/dev/shm", "/dev/mqueue")  # every directory a command can leave state in (and SysV IPC)
DRAIN_AFTER_EXIT_S = 0.2  # how long to wait for output still buffered when the command has exited


def _read_request():
    """The next request, or None when the host closed stdin (a server's signal to exit)."""
    header = sys.stdin.buffer.readline()
    if not header:
        return None
    size = int(header.decode("ascii").strip())
    return json.loads(sys.stdin.buffer.read(size).decode("utf-8"))


def _reply(obj, framed=False):
    data = json.dumps(obj).encode("utf-8")
    sys.stdout.buffer.write(b"%d\n" % len(data) + data if framed else data)
    sys.stdout.buffer.flush()


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


class Refused(Exception):
    """A file operation the protocol does not allow (a path outside /work, a FIFO, a device, a symlink)."""


def _work_path(relative):
    """The absolute path of ``relative`` under /work; Refused if it is absolute, climbs out, or goes through a symlink out."""
    path = os.path.normpath(os.path.join("/work", relative))
    if os.path.isabs(relative) or not path.startswith("/work/"):
        raise Refused("path must be relative to the working directory, without climbing out with '..'")
    real_parent = os.path.realpath(os.path.dirname(path))
    if real_parent != "/work" and not real_parent.startswith("/work/"):
        raise Refused("path leads out of the working directory through a symbolic link")
    return path


def _open_regular(path, flags):
    """Open ``path`` without following a final symlink and without blocking (a FIFO would); only a regular file stays open."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused("not a regular file")
    return fd


def do_read(req):
    max_bytes = int(req["max_bytes"])
    try:
        fd = _open_regular(_work_path(req["path"]), os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            data = f.read(max_bytes + 1)
    except Refused as exc:
        return {"v": PROTOCOL, "error": f"{req['path']}: {exc}"}
    except OSError as exc:
        message = "not a regular file" if exc.errno in (errno.ELOOP, errno.ENXIO) else exc.strerror or exc
        return {"v": PROTOCOL, "error": f"{req['path']}: {message}"}
    return {"v": PROTOCOL, "content": _b64(data[:max_bytes]), "truncated": len(data) > max_bytes}


def do_write(req):
    for item in req["files"]:
        try:
            path = _work_path(item["path"])
            if os.path.lexists(path) and not (stat.S_ISREG(os.lstat(path).st_mode)):
                raise Refused("something other than a regular file is in the way")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = _open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(item["content"]))
        except Refused as exc:
            return {"v": PROTOCOL, "error": f"{item['path']}: {exc}"}
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
        if os.stat(top).st_uid == os.getuid():  # /work is ours: a command may have made it unreadable
            with contextlib.suppress(OSError):
                os.chmod(top, os.stat(top).st_mode | 0o700)
        try:
            names = os.listdir(top)
        except OSError:
            continue  # reported below as left over
        for name in names:
            path = os.path.join(top, name)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    _remove_tree(top, name)
                else:
                    os.unlink(path)
            except OSError:
                pass  # reported below as left over
    os.chdir("/")
    return {
        "v": PROTOCOL,
        "leftover_processes": _own_processes(),
        "leftover_files": _leftover_files(),
        "leftover_ipc": _remove_ipc_objects(),
    }


def _remove_tree(parent, name):
    """Remove directory ``parent/name`` of any depth and any permissions its owner set.

    Iterative, and it walks down with relative ``chdir`` so that no path grows long and only one directory is open
    at a time: a tree 3,000 directories deep defeats ``shutil.rmtree`` (recursion, open files, PATH_MAX).
    """
    os.chdir(parent)
    stack, stuck = [name], set()  # invariant: the working directory is the parent of stack[-1]
    while stack:
        current = stack[-1]
        with contextlib.suppress(OSError):
            os.chmod(current, 0o700)  # a command may chmod its directories unreadable or read-only to make them stay
        subdir = None
        try:
            entries = list(os.scandir(current))
        except OSError:
            entries = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.inode() not in stuck:
                    subdir = entry.name
            else:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(current, entry.name))
        if subdir is not None:
            os.chdir(current)
            stack.append(subdir)
            continue
        try:
            os.rmdir(current)
        except OSError:
            stuck.add(os.lstat(current).st_ino)  # left over (and reported); never entered again
        stack.pop()
        if stack:
            os.chdir("..")


# SysV IPC objects outlive the processes that made them: /proc/sysvipc lists them (id column, owner uid column).
_IPC_KINDS = (("shm", 1, 7, "shmctl"), ("msg", 1, 7, "msgctl"), ("sem", 1, 4, "semctl"))
IPC_RMID = 0


def _remove_ipc_objects():
    """Remove the shared memory segments, message queues and semaphore sets this user owns; count those that stay."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except Exception:
        return -1  # no way to remove them: counted as left over, so the host restarts the container
    uid, left = os.getuid(), 0
    for kind, id_column, uid_column, call in _IPC_KINDS:
        try:
            with open("/proc/sysvipc/" + kind) as table:
                rows = [line.split() for line in table.readlines()[1:]]
        except OSError:
            continue
        for row in rows:
            if int(row[uid_column]) != uid:
                continue
            args = (int(row[id_column]), 0, IPC_RMID, None) if call == "semctl" else (int(row[id_column]), IPC_RMID, None)
            if getattr(libc, call)(*args) != 0:
                left += 1
    return left


def _own_processes():
    """Live processes of this user other than this one (zombies are dead; PID 1 reaps them)."""
    me, uid, found = os.getpid(), os.getuid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat("/proc/" + entry).st_uid != uid:
                continue
            with open("/proc/" + entry + "/stat") as status:
                state = status.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # exited while we looked
        if state not in ("Z", "X"):
            found.append(int(entry))
    return found


def _leftover_files():
    found = []
    for top in WRITABLE_DIRS:
        try:
            found += [os.path.join(top, name) for name in os.listdir(top)]
        except FileNotFoundError:
            pass
        except OSError:
            found.append(top + " (unreadable)")
    return found


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def main():
    try:
        # Nothing else of this user may open this process's stdout through /proc and forge a reply.
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:
        pass
    handlers = {"exec": do_exec, "read": do_read, "write": do_write, "reset": do_reset, "ping": lambda r: {"v": PROTOCOL}}
    if sys.argv[1:] != ["serve"]:
        req = _read_request()
        _reply(handlers[req["op"]](req))
        return
    # Serve: one request after another on the same stdin/stdout, each reply framed like a request, until stdin closes.
    while True:
        req = _read_request()
        if req is None:
            return
        os.chdir("/")
        _reply(handlers[req["op"]](req), framed=True)


if __name__ == "__main__":
    main()
