"""The grading sandbox, loaded by every Python process that scripts/grade.py starts for a submission.

When LORA_SCRATCH_SANDBOX names a folder (the submission's working copy), an audit hook (PEP 578; it cannot be
removed once added) refuses, with PermissionError:
- opening a file for writing, creating, deleting, renaming, linking or changing the mode, owner or times of a
  path outside that folder (/dev/null and /dev/shm excepted), and sqlite3 databases outside it;
- starting a program other than this Python (os.system, exec, spawn, subprocess of anything else), or this
  Python without the sandbox's variables (so every child process is sandboxed too).
Reading is allowed: a notebook must import the package and read the data.

On Linux 5.13 or later the kernel enforces the same write rule as well (Landlock, unprivileged, inherited by
every child process), which also covers writes from native code — torch.save and safetensors write from C++ and
Rust, where no audit hook sees them. Where Landlock is missing (macOS, older kernels) only the audit hook
applies; LORA_SCRATCH_SANDBOX_LEVEL tells grade.py which.

This guards against a submission's accidents and tampering — a notebook that cleans up with
shutil.rmtree(Path.home() / ...), writes results next to the course, or deletes a grader's file. It is not a
complete isolation (a submission can still read files, use the network and burn CPU): grade work you do not trust
inside a container or virtual machine.
"""
import os
import shutil
import sys

_ROOT = os.environ.get("LORA_SCRATCH_SANDBOX")


def _install(root: str) -> None:
    allowed = [os.path.realpath(root), "/dev/null", "/dev/shm"]
    python = os.path.realpath(sys.executable)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def resolve(path, dir_fd=None) -> str:
        path = os.fsdecode(path)
        if dir_fd is not None and not os.path.isabs(path):
            path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        return os.path.realpath(path)

    def inside(path, dir_fd=None) -> bool:
        if isinstance(path, int):
            return True  # an open file descriptor: its opening was checked
        p = resolve(path, dir_fd)
        return any(p == a or p.startswith(a + os.sep) for a in allowed)

    def refuse(what, path) -> None:
        raise PermissionError(f"grading sandbox: {what} {path!r} is not allowed; a submission may write only inside "
                              f"its working copy {root}")

    def program(executable, env) -> str:
        name = os.fsdecode(executable)
        if os.sep not in name:  # looked up on PATH, as the exec family does
            path = (env or os.environ).get("PATH", os.defpath) if env is None or "PATH" in env else os.defpath
            found = shutil.which(name, path=os.fsdecode(path))
            name = found or name
        return os.path.realpath(name)

    def check_exec(executable, env) -> None:
        if executable is None or program(executable, env) != python:
            refuse("starting the program", executable)
        if env is not None and os.fsdecode(env.get("LORA_SCRATCH_SANDBOX", env.get(b"LORA_SCRATCH_SANDBOX", b"")) or
                                           "") != root:
            refuse("starting Python without the sandbox's environment:", executable)

    one_path = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 2, "os.chmod": 2, "os.chown": 3, "os.utime": 3,
                "shutil.rmtree": 1, "os.truncate": None, "os.chflags": None, "os.lchflags": None, "os.mkfifo": None,
                "os.mknod": None, "os.setxattr": None, "os.removexattr": None}
    two_paths = ("os.rename", "os.link", "os.symlink", "shutil.move", "shutil.copytree", "shutil.copyfile")

    def hook(event, args):
        if event == "open":
            path, mode, flags = (list(args) + [None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & write_flags))
            if path is not None and writing and not inside(path):
                refuse("writing", path)
        elif event in one_path:
            dir_fd = args[one_path[event]] if one_path[event] is not None and len(args) > one_path[event] else None
            if not isinstance(dir_fd, int):
                dir_fd = None
            if not inside(args[0], dir_fd):
                refuse(event.replace("os.", "").replace("shutil.", "") + " on", args[0])
        elif event in two_paths:
            targets = args[1:2] if event in ("os.symlink", "shutil.copytree", "shutil.copyfile") else args[:2]
            for path in targets:
                if not inside(path):
                    refuse(event.split(".")[-1] + " with", path)
        elif event == "sqlite3.connect":
            db = args[0]
            if db not in (":memory:", b":memory:", "") and not inside(db):
                refuse("opening the database", db)
        elif event == "subprocess.Popen":
            executable, _argv, _cwd, env = args
            check_exec(executable, env)
        elif event in ("os.exec", "os.posix_spawn"):
            check_exec(args[0], args[2])
        elif event == "os.spawn":
            check_exec(args[1], args[3])
        elif event in ("os.system", "os.startfile", "pty.spawn"):
            refuse("running the command", args[0] if args else event)

    sys.addaudithook(hook)


def _landlock(root: str) -> bool:
    """Ask the kernel to refuse every write outside `root` (and /dev/null, /dev/shm) to this process and its
    children. False where Landlock is not available; nothing is changed then."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    create, add_rule, restrict = 444, 445, 446  # the same numbers on every Linux architecture (unified table)
    abi = libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # LANDLOCK_CREATE_RULESET_VERSION
    if abi < 1:
        return False
    write_file, remove_dir, remove_file = 1 << 1, 1 << 4, 1 << 5
    make = sum(1 << b for b in (6, 7, 8, 9, 10, 11, 12))  # char, dir, reg, sock, fifo, block, sym
    handled = write_file | remove_dir | remove_file | make
    handled |= (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0)  # REFER (rename across), TRUNCATE

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("handled_access_fs", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    attr = RulesetAttr(handled)
    ruleset = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    try:
        file_rights = write_file | (1 << 14 if abi >= 3 else 0)
        for path, rights in ((root, handled), ("/dev/shm", handled), ("/dev/null", file_rights)):
            if not os.path.exists(path):
                continue
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = PathBeneath(rights, fd)
                if libc.syscall(add_rule, ruleset, ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    return False
            finally:
                os.close(fd)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, required to restrict oneself unprivileged
            return False
        return libc.syscall(restrict, ruleset, ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


if _ROOT:
    _install(_ROOT)
    os.environ["LORA_SCRATCH_SANDBOX_LEVEL"] = "landlock+audit" if _landlock(_ROOT) else "audit"
