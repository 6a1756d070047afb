# Bootstrap run by `python3 -I -c` before the candidate program (sys.argv[1]).
#
# An audit hook (PEP 578) refuses, inside the interpreter, what the OS limits do not already stop:
# writing outside the working directory, starting processes, signalling other processes, network
# connections, and loading native code through ctypes (which could remove the hook). Hooks cannot
# be removed once added. This is defence in depth; the real limits are the rlimits, the process
# group, the unprivileged uid and the network namespace set up by the parent.
import os
import sys


def _install_guard(root):
    realpath = os.path.realpath
    root = realpath(root)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    blocked = frozenset({
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "os.kill",
        "os.killpg", "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "socket.connect",
        "socket.sendto", "socket.bind",
    })
    path_events = frozenset({
        "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
        "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    })

    def inside(path):
        try:
            full = realpath(os.path.join(root, os.fsdecode(path)))
        except Exception:
            return False
        return full == root or full.startswith(root + os.sep)

    def refuse(what):
        raise PermissionError("sandbox: " + what)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing and not inside(path):
                refuse("writing outside the working directory is not allowed: %r" % (path,))
        elif event in blocked:
            refuse("%s is not allowed" % event)
        elif event in path_events:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)) and not inside(arg):
                    refuse("%s outside the working directory is not allowed: %r" % (event, arg))

    sys.addaudithook(hook)


_install_guard(os.getcwd())
del _install_guard

with open(sys.argv[1], encoding="utf-8") as _source:
    _code = compile(_source.read(), sys.argv[1], "exec")
sys.argv = sys.argv[1:]
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
