"""Scenario files: the schema as data, and parsing that names the file, the step and the field.

A scenario is one TOML file: the shipped ones live in the top-level ``scenarios/`` folder,
installed with the lab as the package data ``lab.scenarios``. A file has a description,
optionally ``nofile`` (the RLIMIT_NOFILE the target starts with), and ``[[steps]]`` run in
order against one fresh instance of the target. Each step has an ``action`` from ``ACTIONS`` and the fields that action
takes; a step with ``save = "name"`` records what it measured under that name, which the
checklist reads as ``"scenario/name"``. Sizes and durations are human (``10MiB``, ``500ms``).

Validation happens on load, before anything runs: an unknown action or field, a missing or
mistyped field, a negative size, a group used before a ``connect`` created it, a duplicate
``save`` or a TOML syntax error raises ``ScenarioError`` naming the file, the step and the field.
Nothing here does I/O except ``load_scenario`` and ``load_scenarios`` reading the files.
"""

from __future__ import annotations

import signal
import string
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lab.errors import UsageError
from lab.units import parse_duration, parse_size


class ScenarioError(UsageError):
    """A scenario file that cannot run; the message names the file, the step and the field."""


# -- field types: each turns a TOML value into what the engine uses, or raises ValueError ------


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"expected a name of letters, digits, '-' and '_', got {value!r}")
    return value


MAX_COUNT = 1 << 20  # the kernel's default ceiling on open files (fs.nr_open): more is a typo


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_COUNT:
        raise ValueError(f"expected a whole number from 1 to {MAX_COUNT}, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


MESSAGE_FIELDS = {"i": "the client's number", "r": "the round"}


def _message(value: object) -> str:
    """A text sent as is, except ``{i}`` and ``{r}``; checked here so that sending it later
    (``str.format``) cannot fail or blow up (``{i:>999999999}``)."""
    text = _text(value)
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(text)
                  if name is not None]
    except ValueError as error:
        raise ValueError(f"{error} in {text!r}; write {{{{ and }}}} for literal braces") from None
    for name, spec, conversion in fields:
        if name not in MESSAGE_FIELDS or spec or conversion:
            known = ", ".join(f"{{{key}}} ({meaning})" for key, meaning in MESSAGE_FIELDS.items())
            raise ValueError(f"only {known} may stand in braces, got {text!r}; write {{{{ and }}}} for literal braces")
    return text


def _size(value: object) -> int:
    size = parse_size(value)  # type: ignore[arg-type]
    if size < 1:
        raise ValueError(f"expected at least 1 byte, got {value!r}")
    return size


def _duration(value: object) -> float:
    return parse_duration(value)  # type: ignore[arg-type]


def _one_of(choices: tuple[str, ...]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value  # type: ignore[return-value]

    return check


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _signal(value: object) -> str:
    if not isinstance(value, str) or value not in signal.Signals.__members__:
        raise ValueError(f"expected a signal name such as 'SIGTERM', got {value!r}")
    return value


CLOSE_HOWS = ("close", "reset", "half")
FINISH_UNTIL = ("echo", "eof")  # what a finish step waits for: the whole echo, or the server's EOF

TYPES = {
    "name": _name, "group": _name, "count": _count, "text": _text, "message": _message, "size": _size,
    "duration": _duration, "how": _one_of(CLOSE_HOWS), "signal": _signal, "until": _one_of(FINISH_UNTIL),
    "flag": _flag,
}  # fmt: skip


@dataclass(slots=True, frozen=True)
class Action:
    """What one action does, the fields it requires and the optional ones with defaults.
    ``one_of`` lists fields of which exactly one must be given."""

    summary: str
    required: dict[str, str]
    optional: dict[str, tuple[str, object]] = field(default_factory=dict)
    one_of: tuple[str, ...] = ()


SAVE = {"save": ("name", None)}

ACTIONS: dict[str, Action] = {
    "probe": Action(
        "read the server's /proc evidence (fds, epoll masks, TCP states, threads, CPU, RSS)",
        {"save": "name"},
    ),
    "connect": Action(
        "open CLIENTS connections at once as GROUP; with JOIN, they join GROUP, made by an "
        "earlier connect (the steps after it see one group)",
        {"group": "group", "clients": "count"},
        {"timeout": ("duration", 10.0), "join": ("flag", False), **SAVE},
    ),
    "echo": Action(
        "each client of GROUP sends MESSAGE (with {i} = client, {r} = round) or SIZE random "
        "bytes in one write and waits for the same bytes back, ROUNDS times",
        {"group": "group"},
        {"message": ("message", None), "size": ("size", None), "rounds": ("count", 1),
         "timeout": ("duration", 10.0), **SAVE},
        one_of=("message", "size"),
    ),
    "stream": Action(
        "each client of GROUP sends SIZE bytes while reading the echo (SHA-256 compared), at "
        "RATE bytes per second if given; SIGNAL goes to the server once SIGNAL_AFTER bytes came "
        "back in all, the clients keep sending until the server's EOF and once more after it "
        "(a reset then is recorded)",
        {"group": "group", "size": "size"},
        {"timeout": ("duration", 60.0), "rate": ("size", None), "signal": ("signal", None),
         "signal_after": ("size", None), **SAVE},
    ),
    "send": Action(
        "each client of GROUP sends MESSAGE or up to SIZE bytes without reading, for at most "
        "TIMEOUT; with STALL, until the writes pause that long (what is left is dropped)",
        {"group": "group"},
        {"message": ("message", None), "size": ("size", None), "timeout": ("duration", 1.0),
         "stall": ("duration", None), **SAVE},
        one_of=("message", "size"),
    ),
    "finish": Action(
        "clients of GROUP send the rest of their SIZE and read every echoed byte (UNTIL 'echo'), "
        "or read until the server's EOF (UNTIL 'eof')",
        {"group": "group"},
        {"timeout": ("duration", 60.0), "until": ("until", "echo"), **SAVE},
    ),
    "shutdown": Action(
        "clients of GROUP send their FIN (shutdown(SHUT_WR)) and read nothing yet",
        {"group": "group"},
    ),
    "freeze": Action(
        "stop the server (SIGSTOP to its process group): what clients do meanwhile waits in the "
        "kernel and reaches the server in one wakeup once it is thawed",
        {},
    ),
    "thaw": Action("resume a frozen server (SIGCONT)", {}),
    "signal": Action(
        "send SIGNAL to the server; its queues for GROUP are read just before (what it had read)",
        {"signal": "signal", "group": "group"},
        SAVE,
    ),
    "queues": Action(
        "read the kernel's queues of GROUP's connections at both ends (Send-Q, Recv-Q in "
        "/proc/net/tcp) and the server's epoll mask for its end",
        {"group": "group", "save": "name"},
    ),
    "fill": Action(
        "each client of GROUP sends START bytes, then STEP bytes at a time, without reading, "
        "each time waiting until the server has read them, until the server holds echo the "
        "kernel's queues could not take, stops reading, or got SIZE from each",
        {"group": "group", "size": "size", "save": "name"},
        {"start": ("size", 2 * 1024 * 1024), "step": ("size", 512 * 1024), "timeout": ("duration", 10.0)},
    ),
    "await_read": Action(
        "wait until the server has read every byte GROUP sent (its end's Recv-Q and the "
        "clients' Send-Q are 0), or TIMEOUT",
        {"group": "group", "save": "name"},
        {"timeout": ("duration", 5.0)},
    ),
    "close": Action(
        "close GROUP: 'close', 'reset' (SO_LINGER 0) or 'half' (shutdown(SHUT_WR), read the rest "
        "of the echo, wait up to 1 s for EOF)",
        {"group": "group"},
        {"how": ("how", "close"), "timeout": ("duration", 5.0), **SAVE},
    ),
    "idle": Action(
        "do nothing for DURATION and measure the CPU the server burns meanwhile (CPU time, and "
        "time running or waiting to run, which a busy loop fills even on a loaded machine)",
        {"duration": "duration"},
        SAVE,
    ),
    "settle": Action(
        "probe until fds and epoll registrations are back to the BASELINE probe and no "
        "socket is in CLOSE_WAIT, or TIMEOUT",
        {"baseline": "name", "save": "name"},
        {"timeout": ("duration", 5.0)},
    ),
    "watch": Action(
        "for the server's idle timeout + its tick + TOLERANCE: IDLE stays quiet, ACTIVE sends a "
        "line every quarter timeout; record when each connection is closed",
        {"idle": "group", "active": "group", "save": "name"},
        {"tolerance": ("duration", 1.0)},
    ),
    "exit": Action(
        "wait up to the server's drain timeout + TIMEOUT for it to exit; try a new connection first",
        {"save": "name"},
        {"timeout": ("duration", 5.0)},
    ),
}

TOP_LEVEL = {"description": "text", "nofile": "count", "steps": None}


@dataclass(slots=True, frozen=True)
class Step:
    index: int  # 1-based, as the error messages and the progress line count
    action: str
    params: dict[str, object]

    @property
    def save(self) -> str | None:
        return self.params.get("save")  # type: ignore[return-value]

    def describe(self) -> str:
        group = self.params.get("group")
        return f"{self.action} {group}" if group else self.action


@dataclass(slots=True, frozen=True)
class Scenario:
    name: str
    path: str
    description: str
    steps: tuple[Step, ...]
    nofile: int | None = None

    @property
    def saves(self) -> tuple[str, ...]:
        return tuple(step.save for step in self.steps if step.save)

    @property
    def max_clients(self) -> int:
        """Connections open at once at most (every group stays open until closed)."""
        open_now = peak = 0
        sizes: dict[str, int] = {}
        for step in self.steps:
            if step.action == "connect":
                group, clients = step.params["group"], step.params["clients"]
                sizes[group] = clients + (sizes.get(group, 0) if step.params["join"] else 0)  # type: ignore[index,operator,arg-type]
                open_now += clients  # type: ignore[operator]
                peak = max(peak, open_now)
            elif step.action == "close":
                open_now -= sizes.pop(step.params["group"], 0)  # type: ignore[arg-type]
        return peak


def parse_scenario(text: str, path: str) -> Scenario:
    """Parse and validate one scenario file's text; ``path`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
    return scenario_from_data(data, path)


def scenario_from_data(data: dict, path: str) -> Scenario:
    """Validate a scenario file's parsed TOML (any tables, arrays and values TOML can hold)."""
    for key in data:
        if key not in TOP_LEVEL:
            raise ScenarioError(f"{path}: unknown top-level field {key!r}; known: {', '.join(TOP_LEVEL)}")
    description = _convert(path, "description", data.get("description"), "text")
    nofile = _convert(path, "nofile", data["nofile"], "count") if "nofile" in data else None
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps or not all(isinstance(s, dict) for s in raw_steps):
        raise ScenarioError(f"{path}: needs at least one [[steps]] table")
    steps = tuple(_parse_step(path, index, raw) for index, raw in enumerate(raw_steps, start=1))
    _check_references(path, steps)
    return Scenario(Path(path).stem, path, description, steps, nofile)


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {error.start}): is it a scenario file?") from None
    except ValueError:  # a NUL byte in the path
        raise ScenarioError(f"{path!r}: not a file name (it holds a NUL byte)") from None
    return parse_scenario(text, str(path))


def shipped_scenarios() -> Path:
    """The folder of the scenarios shipped with the lab, wherever the lab is installed."""
    return Path(resources.files("lab.scenarios"))


def load_scenarios(paths: Sequence[str | Path] = ()) -> dict[str, Scenario]:
    """Scenario files by name, from files and folders (default: the shipped scenarios)."""
    files: list[Path] = []
    for path in map(Path, paths or [shipped_scenarios()]):
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            if not found:
                raise UsageError(f"{path}: no *.toml scenario files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such scenario file or folder")
    scenarios: dict[str, Scenario] = {}
    for file in files:
        scenario = load_scenario(file)
        if scenario.name in scenarios and scenarios[scenario.name].path != scenario.path:
            first = scenarios[scenario.name].path
            raise UsageError(f"{file}: a scenario named {scenario.name!r} is already loaded from {first}")
        scenarios[scenario.name] = scenario
    return scenarios


def _convert(where: str, name: str, value: object, kind: str):
    if value is None:
        raise ScenarioError(f"{where}: missing field {name!r}")
    try:
        return TYPES[kind](value)
    except ValueError as error:
        raise ScenarioError(f"{where}: field {name!r}: {error}") from None


def _parse_step(path: str, index: int, raw: dict) -> Step:
    action_name = raw.get("action")
    where = f"{path}: step {index}"
    if not isinstance(action_name, str) or action_name not in ACTIONS:
        raise ScenarioError(f"{where}: field 'action': expected one of {', '.join(ACTIONS)}, got {action_name!r}")
    action = ACTIONS[action_name]
    where = f"{where} ({action_name})"
    for key in raw:
        if key != "action" and key not in action.required and key not in action.optional:
            known = ", ".join([*action.required, *action.optional])
            raise ScenarioError(f"{where}: unknown field {key!r}; {action_name} takes {known}")
    params: dict[str, object] = {}
    for name, kind in action.required.items():
        params[name] = _convert(where, name, raw.get(name), kind)
    for name, (kind, default) in action.optional.items():
        params[name] = _convert(where, name, raw[name], kind) if name in raw else default
    if action.one_of and sum(name in raw for name in action.one_of) != 1:
        raise ScenarioError(f"{where}: give exactly one of the fields {' or '.join(map(repr, action.one_of))}")
    if "signal_after" in action.optional and (params["signal"] is None) != (params["signal_after"] is None):
        raise ScenarioError(f"{where}: fields 'signal' and 'signal_after' go together")
    return Step(index, action_name, params)


def _check_references(path: str, steps: tuple[Step, ...]) -> None:
    """Groups exist before use and are made once, saves are unique, a settle's baseline is an
    earlier probe, freeze and thaw alternate (the runner thaws a server left frozen at the end)."""
    groups: dict[str, int] = {}  # group -> the step that made it
    saves: set[str] = set()
    probes: set[str] = set()
    frozen = False
    for step in steps:
        where = f"{path}: step {step.index} ({step.action})"
        if step.action in ("freeze", "thaw"):
            if frozen == (step.action == "freeze"):
                state = "already frozen" if frozen else "not frozen"
                raise ScenarioError(f"{where}: the server is {state} here")
            frozen = not frozen
        for name in ("group", "idle", "active"):
            group = step.params.get(name)
            if group is None:
                continue
            if step.action == "connect" and step.params["join"]:
                if group not in groups:
                    raise ScenarioError(f"{where}: field 'join': no earlier connect step made group {group!r}")
            elif step.action == "connect":
                if group in groups:
                    raise ScenarioError(
                        f"{where}: field 'group': group {group!r} was already made by step {groups[group]} "
                        "(connect); a connect makes a new group, so give it another name (or join = true to add to it)"
                    )
                groups[group] = step.index  # type: ignore[index]
            elif group not in groups:
                raise ScenarioError(f"{where}: field {name!r}: no earlier connect step made group {group!r}")
        if step.action == "watch" and step.params["idle"] == step.params["active"]:
            raise ScenarioError(f"{where}: fields 'idle' and 'active' must be two different groups")
        if step.action == "settle" and step.params["baseline"] not in probes:
            baseline = step.params["baseline"]
            raise ScenarioError(f"{where}: field 'baseline': {baseline!r} is not an earlier probe's save")
        if step.save:
            if step.save in saves:
                raise ScenarioError(f"{where}: field 'save': {step.save!r} is already saved by an earlier step")
            saves.add(step.save)
            if step.action in ("probe", "settle"):
                probes.add(step.save)


def check_needs(scenarios: dict[str, Scenario], needs: tuple[str, ...], item_id: str) -> None:
    """Every ``scenario/save`` an item reads exists, or a ScenarioError names what is missing."""
    for need in needs:
        scenario_name, _, save = need.partition("/")
        scenario = scenarios.get(scenario_name)
        if scenario is None:
            raise ScenarioError(f"{item_id} needs the scenario {scenario_name!r}, which is not loaded")
        if save not in scenario.saves:
            raise ScenarioError(f"{scenario.path}: no step saves {save!r}, which {item_id} reads")
