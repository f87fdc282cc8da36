"""Make this Linux Python look like a macOS (FOREIGN=darwin) or Windows (FOREIGN=win32) host to
the code it runs, to check that ``lab`` there reaches the container path without crashing:

    PYTHONPATH=tests/foreign FOREIGN=win32 .venv/bin/lab --help

What changes: ``select`` loses epoll and its EPOLL* constants; ``resource``, ``fcntl``,
``termios``, ``pwd`` and ``grp`` cannot be imported (Windows lacks them; macOS has them but
the front door must not need them either); ``sys.platform`` is the foreign name. Python
loads this file at start-up (site imports ``sitecustomize``) when its folder is on
PYTHONPATH, before any code of the lab runs.

Some standard modules pick their platform's C helpers by ``sys.platform`` when first imported
(``subprocess`` and ``multiprocessing`` load ``_winapi`` on win32, ``urllib.request`` loads
``_scproxy`` on darwin): they are imported first, so they work as they would on that host.
With FOREIGN_STRICT=1 the heavy ones the front door has no use for (asyncio, multiprocessing,
urllib.request) are not, as in the team's shared fake: a command that imports one of them at
start-up then fails, which is how the front door is kept from needing them. (shutil and
tempfile, which every host has and which load ``_winapi`` on win32 from Python 3.12, are.)
"""

import importlib
import os
import select
import sys

PLATFORM_BRANCHING_STDLIB = (
    "asyncio", "ctypes", "getpass", "mimetypes", "multiprocessing", "multiprocessing.connection",
    "multiprocessing.context", "platform", "shutil", "subprocess", "tempfile", "urllib.request", "uuid",
)
AVOIDED_AT_START_UP = ("asyncio", "multiprocessing", "urllib")  # and their submodules

UNIX_ONLY_MODULES = ("resource", "fcntl", "termios", "pwd", "grp")


class _UnixOnlyModules:
    """A meta path finder that refuses the modules a Windows Python does not have."""

    def find_spec(self, name, path=None, target=None):
        if name in UNIX_ONLY_MODULES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


_strict = os.environ.get("FOREIGN_STRICT") == "1"
for _name in PLATFORM_BRANCHING_STDLIB:
    if not (_strict and _name.split(".")[0] in AVOIDED_AT_START_UP):
        importlib.import_module(_name)
for _name in [name for name in dir(select) if name.startswith("EPOLL") or name == "epoll"]:
    delattr(select, _name)
for _name in UNIX_ONLY_MODULES:
    sys.modules.pop(_name, None)  # so an import cannot find what site already loaded
sys.meta_path.insert(0, _UnixOnlyModules())
sys.platform = os.environ.get("FOREIGN", "darwin")
