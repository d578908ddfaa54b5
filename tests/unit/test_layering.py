"""The layering rules of docs/architecture.md, checked on the source so that a slip fails a test.

Imports flow one way, ``fsm ← rpc ← replication ← server``; modules import no circle; only
``server/raft/`` knows PySyncObj; ``fsm/`` does no I/O, reads no clock and starts no thread; and
every package folder is installed (pyproject.toml lists it). The checker reads each module with
``ast`` (absolute and relative imports, imports inside functions too) and never imports the code,
so a broken module is still checked. ``test_the_checker_reports_each_kind_of_violation`` runs it
over a small tree with one violation of each kind, so the guard itself is tested.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTION = "meshfed"
LAYERS = ("fsm", "rpc", "replication", "server")
# Each layer may import itself and the layers before it in LAYERS.
MAY_IMPORT = {layer: set(LAYERS[: position + 1]) for position, layer in enumerate(LAYERS)}
FSM_THIRD_PARTY = frozenset({"msgpack"})
RAFT_ADAPTER = Path("server/raft")

# fsm/ runs inside Raft's apply on every replica: whatever it does must depend only on the command
# and the state, or replicas diverge. These standard modules exist to touch the world outside.
FSM_DENIED_MODULES = {
    **dict.fromkeys(
        ("os", "io", "sys", "socket", "ssl", "select", "selectors", "mmap", "fcntl", "shutil",
         "tempfile", "pathlib", "glob", "sqlite3", "dbm", "shelve", "logging", "http", "urllib",
         "socketserver", "smtplib", "ftplib", "xmlrpc", "webbrowser", "platform", "getpass"),
        "I/O",
    ),
    **dict.fromkeys(
        ("threading", "_thread", "asyncio", "concurrent", "multiprocessing", "queue", "subprocess",
         "signal", "sched"),
        "threads, processes or an event loop",
    ),
    **dict.fromkeys(("random", "secrets", "uuid"), "randomness that differs between replicas"),
    "importlib": "imports this checker cannot see",
}
# The state store is called from two threads (Raft applies on its tick thread, the event loop
# reads), so it may guard its tables with a lock; it may not start, wait on or time threads.
FSM_THREADING_ALLOWED = frozenset({"Lock", "RLock"})
# `time` and `datetime` hold pure conversions too, so importing them is allowed; reading the clock
# is not. The second group reads the clock only when called without the time argument.
CLOCK_CALLS = frozenset({
    "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns", "time.perf_counter",
    "time.perf_counter_ns", "time.process_time", "time.process_time_ns", "time.thread_time",
    "time.thread_time_ns", "time.sleep", "datetime.datetime.now", "datetime.datetime.utcnow",
    "datetime.datetime.today", "datetime.date.today",
})
CLOCK_CALLS_WITHOUT_TIME = {"time.localtime": 0, "time.gmtime": 0, "time.ctime": 0, "time.asctime": 0,
                            "time.strftime": 1}
FSM_DENIED_BUILTINS = {"open": "I/O", "input": "I/O", "print": "I/O"}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Import:
    """One import statement, resolved to absolute dotted names."""

    line: int
    text: str
    targets: tuple[str, ...]  # what the statement names: the module, or module.name per name
    base: str  # the module an `import` names, or the module a `from ... import` reads from
    aliases: tuple[tuple[str, str], ...]  # (local name, dotted name it is bound to)
    type_checking: bool  # under `if TYPE_CHECKING:`, so it never runs


@dataclass
class Module:
    name: str
    path: str  # relative to the tree root, as the failure messages show it
    tree: ast.Module
    imports: list[Import]

    @property
    def layer(self) -> str:
        return self.name.split(".")[1]


@cache
def load_modules(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for layer in LAYERS:
        for file in sorted((root / layer).rglob("*.py")):
            parts = [DISTRIBUTION, *file.relative_to(root).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            source = file.read_text(encoding="utf-8")
            tree = ast.parse(source, filename=str(file))
            package = name if is_package else name.rsplit(".", 1)[0]
            path = file.relative_to(root).as_posix()
            modules[name] = Module(name, path, tree, list(_imports(tree, source, package)))
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, source: str, package: str) -> Iterator[Import]:
    """Every import statement, at any depth (functions and classes included)."""

    def walk(node: ast.AST, type_checking: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield _resolve(child, source, package, type_checking)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), True)
                for statement in child.orelse:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), type_checking)
            else:
                yield from walk(child, type_checking)

    yield from walk(tree, False)


def _resolve(node: ast.Import | ast.ImportFrom, source: str, package: str, type_checking: bool) -> Import:
    text = " ".join((ast.get_source_segment(source, node) or "").split())
    if isinstance(node, ast.Import):
        aliases = tuple((alias.asname or alias.name.split(".")[0],
                         alias.name if alias.asname else alias.name.split(".")[0]) for alias in node.names)
        targets = tuple(alias.name for alias in node.names)
        return Import(node.lineno, text, targets, targets[0], aliases, type_checking)
    if node.level:
        base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join([*base_parts, *([node.module] if node.module else [])])
    else:
        base = node.module or ""
    targets = tuple(f"{base}.{alias.name}" for alias in node.names)
    aliases = tuple((alias.asname or alias.name, f"{base}.{alias.name}") for alias in node.names)
    return Import(node.lineno, text, targets, base, aliases, type_checking)


def _module_of(target: str, modules: dict[str, Module]) -> str | None:
    """The most specific module of the tree that importing ``target`` runs, if any."""
    parts = target.split(".")
    for length in range(len(parts), 0, -1):
        if ".".join(parts[:length]) in modules:
            return ".".join(parts[:length])
    return None


def layer_violations(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for module in load_modules(root).values():
        allowed = MAY_IMPORT[module.layer]
        for imp in module.imports:
            for target in imp.targets:
                parts = target.split(".")
                if parts[0] == DISTRIBUTION and len(parts) > 1 and parts[1] not in allowed:
                    found.append(Violation(module.path, imp.line, f"`{imp.text}`: {module.layer}/ may import only "
                                           f"{', '.join(sorted(allowed))} (fsm <- rpc <- replication <- server)"))
                    break
                top = parts[0]
                if module.layer == "fsm" and top not in (DISTRIBUTION, "__future__", *FSM_THIRD_PARTY) and (
                    top not in sys.stdlib_module_names
                ):
                    found.append(Violation(module.path, imp.line, f"`{imp.text}`: fsm/ may import only fsm/, the "
                                           f"standard library and {', '.join(sorted(FSM_THIRD_PARTY))}"))
                    break
    return found


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = lowest[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                lowest[node] = min(lowest[node], lowest[successor])
            elif successor in on_stack:
                lowest[node] = min(lowest[node], index[successor])
        if lowest[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycle_violations(root: Path) -> list[Violation]:
    """Import circles, counting imports inside functions (deferring an import hides a circle, it
    does not remove it) but not those under ``if TYPE_CHECKING:``, which never run."""
    modules = load_modules(root)
    edges: dict[str, list[tuple[str, Module, Import]]] = {name: [] for name in modules}
    for module in modules.values():
        for imp in module.imports:
            if imp.type_checking:
                continue
            for target in imp.targets:
                imported = _module_of(target, modules)
                if imported is not None:
                    edges[module.name].append((imported, module, imp))
    graph = {name: {imported for imported, _, _ in out} for name, out in edges.items()}
    found: list[Violation] = []
    for group in _strongly_connected(graph):
        if len(group) == 1 and group[0] not in graph[group[0]]:
            continue
        members = set(group)
        inside = sorted({(module.path, imp.line, imp.text) for name in group
                         for imported, module, imp in edges[name] if imported in members})
        first_path, first_line, _ = inside[0]
        steps = "\n    ".join(f"{path}:{line}: `{text}`" for path, line, text in inside)
        found.append(Violation(first_path, first_line,
                               f"import circle among {', '.join(group)}:\n    {steps}"))
    return found


def pysyncobj_violations(root: Path) -> list[Violation]:
    return [
        Violation(module.path, imp.line, f"`{imp.text}`: only {RAFT_ADAPTER}/ may import pysyncobj")
        for module in load_modules(root).values()
        if not Path(module.path).is_relative_to(RAFT_ADAPTER)
        for imp in module.imports
        if any(target.split(".")[0] == "pysyncobj" for target in imp.targets)
    ]


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (owner := _dotted(node.value)):
        return f"{owner}.{node.attr}"
    return None


def module_bound(module: Module) -> dict[str, str]:
    """Local name -> dotted name it was imported as, across the module's imports."""
    return {local: dotted for imp in module.imports for local, dotted in imp.aliases}


def _qualified(node: ast.expr, bound: dict[str, str]) -> str | None:
    """``t.monotonic`` after ``import time as t`` is ``time.monotonic``; None for local names."""
    name = _dotted(node)
    if name is None:
        return None
    head, _, rest = name.partition(".")
    return ".".join(filter(None, (bound[head], rest))) if head in bound else None


def fsm_purity_violations(root: Path) -> list[Violation]:
    found: list[Violation] = []
    for module in load_modules(root).values():
        if module.layer == "fsm":
            bound = module_bound(module)
            found += _fsm_import_violations(module, bound)
            found += _fsm_module_state_violations(module, bound)
            found += _fsm_call_violations(module, bound)
    return found


def _fsm_import_violations(module: Module, bound: dict[str, str]) -> Iterator[Violation]:
    threading_allowed = "/".join(sorted(FSM_THREADING_ALLOWED))
    for imp in module.imports:
        for target in imp.targets:
            top, _, rest = target.partition(".")
            if top == "threading" and rest:
                if rest.split(".")[0] not in FSM_THREADING_ALLOWED:
                    yield Violation(module.path, imp.line, f"`{imp.text}`: fsm/ starts and waits on no thread; "
                                    f"it may use only threading.{threading_allowed}")
            elif top in FSM_DENIED_MODULES and top != "threading":
                yield Violation(module.path, imp.line, f"`{imp.text}`: fsm/ does no {FSM_DENIED_MODULES[top]}")
    for node in ast.walk(module.tree):
        qualified = _qualified(node, bound) if isinstance(node, ast.Attribute) else None
        if qualified and qualified.startswith("threading.") and qualified.split(".")[1] not in FSM_THREADING_ALLOWED:
            yield Violation(module.path, node.lineno, f"`{_dotted(node)}`: fsm/ starts and waits on no thread; "
                            f"it may use only threading.{threading_allowed}")


def _fsm_module_state_violations(module: Module, bound: dict[str, str]) -> Iterator[Violation]:
    """A module-wide lock or a `global` is state shared by every state machine of the process, and
    outside the snapshot."""
    for statement in module.tree.body:
        value = statement.value if isinstance(statement, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Call) and (_qualified(value.func, bound) or "").startswith("threading."):
            yield Violation(module.path, statement.lineno, f"`{ast.unparse(statement)}`: a module-wide lock is "
                            "shared by every state machine of the process; keep locks per instance")
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Global):
            yield Violation(module.path, node.lineno, f"`global {', '.join(node.names)}`: state of fsm/ lives "
                            "in the state machine and its snapshot, not in module globals")


def _fsm_call_violations(module: Module, bound: dict[str, str]) -> Iterator[Violation]:
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call) or not (name := _dotted(node.func)):
            continue
        qualified = _qualified(node.func, bound) or ""
        given = len(node.args) + len(node.keywords)
        if qualified in CLOCK_CALLS or given <= CLOCK_CALLS_WITHOUT_TIME.get(qualified, -1):
            yield Violation(module.path, node.lineno, f"`{name}()` reads the clock: fsm/ gets time only from "
                            "the command it applies")
        elif name in FSM_DENIED_BUILTINS and name not in bound:
            yield Violation(module.path, node.lineno, f"`{name}()`: fsm/ does no {FSM_DENIED_BUILTINS[name]}")


def package_violations(root: Path) -> list[Violation]:
    """Package folders missing from (or stale in) pyproject.toml, which installs them by name."""
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found: list[Violation] = []
    on_disk: set[str] = set()
    for layer in LAYERS:
        for folder in sorted(path for path in (root / layer).rglob("*") if path.is_dir()):
            if folder.name == "__pycache__":
                continue
            relative = folder.relative_to(root).as_posix()
            if not (folder / "__init__.py").exists():
                if any(folder.glob("*.py")):
                    found.append(Violation(relative, 0, "holds modules but no __init__.py, so it is not installed"))
                continue
            name = ".".join((DISTRIBUTION, *folder.relative_to(root).parts))
            on_disk.add(name)
            if name not in listed:
                found.append(Violation(f"{relative}/__init__.py", 1, f"package {name} is missing from "
                                       "pyproject.toml [tool.setuptools] packages, so it would not be installed"))
        if (root / layer / "__init__.py").exists():
            on_disk.add(f"{DISTRIBUTION}.{layer}")
            if f"{DISTRIBUTION}.{layer}" not in listed:
                found.append(Violation(f"{layer}/__init__.py", 1, f"package {DISTRIBUTION}.{layer} is missing "
                                       "from pyproject.toml [tool.setuptools] packages"))
    for name in sorted(listed - on_disk):
        found.append(Violation("pyproject.toml", 0, f"lists package {name}, which has no folder with __init__.py"))
    return found


def _report(violations: list[Violation]) -> str:
    return "\n".join(str(violation) for violation in violations)


def test_imports_flow_from_fsm_to_rpc_to_replication_to_server() -> None:
    violations = layer_violations(REPO)
    assert not violations, _report(violations)


def test_no_module_import_circle() -> None:
    violations = cycle_violations(REPO)
    assert not violations, _report(violations)


def test_only_the_raft_adapter_imports_pysyncobj() -> None:
    violations = pysyncobj_violations(REPO)
    assert not violations, _report(violations)


def test_fsm_does_no_io_reads_no_clock_and_starts_no_thread() -> None:
    violations = fsm_purity_violations(REPO)
    assert not violations, _report(violations)


def test_every_package_folder_is_installed() -> None:
    violations = package_violations(REPO)
    assert not violations, _report(violations)


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


def test_the_checker_reports_each_kind_of_violation(tmp_path: Path) -> None:
    packages = ["meshfed.fsm", "meshfed.rpc", "meshfed.rpc.gone", "meshfed.replication", "meshfed.server",
                "meshfed.server.raft"]
    _write_tree(tmp_path, {
        "pyproject.toml": f"[tool.setuptools]\npackages = {packages!r}\n",
        "fsm/__init__.py": "",
        "fsm/upward.py": "from meshfed.server.a import thing\nfrom ..rpc import codec\nimport hcl\n",
        "fsm/clock.py": (
            "import time as t\nfrom datetime import datetime\nimport socket\nimport threading\n"
            "from threading import Thread\n_LOCK = threading.Lock()\n\n\n"
            "class Store:\n    def __init__(self):\n        self.lock = threading.RLock()\n\n"
            "    def stamp(self):\n        global _last\n        worker = threading.Thread(target=print)\n"
            "        return t.time(), datetime.now(), t.gmtime(0), t.gmtime(), open('x'), worker\n"
        ),
        "rpc/__init__.py": "",
        "rpc/codec.py": "import msgpack\n\n\ndef later():\n    from meshfed.replication import replicator\n",
        "rpc/raft_client.py": "import pysyncobj.config\n",
        "replication/__init__.py": "",
        "server/__init__.py": "",
        "server/a.py": "from meshfed.server import b\nfrom meshfed.server import c\nthing = 1\n",
        "server/b.py": "def late():\n    from . import a\n",
        "server/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from meshfed.server.a import thing\n",
        "server/raft/__init__.py": "from pysyncobj import SyncObj\n",
        "server/extra/__init__.py": "",
        "server/loose/module.py": "",
    })

    layers = _report(layer_violations(tmp_path))
    assert "fsm/upward.py:1: `from meshfed.server.a import thing`: fsm/ may import only fsm" in layers
    assert "fsm/upward.py:2: `from ..rpc import codec`" in layers
    assert "fsm/upward.py:3: `import hcl`: fsm/ may import only fsm/, the standard library and msgpack" in layers
    assert "rpc/codec.py:5: `from meshfed.replication import replicator`: rpc/ may import only fsm, rpc" in layers
    assert "rpc/codec.py:1" not in layers

    cycles = cycle_violations(tmp_path)
    assert len(cycles) == 1, _report(cycles)
    assert "import circle among meshfed.server.a, meshfed.server.b" in str(cycles[0])
    assert "server/b.py:2: `from . import a`" in str(cycles[0])
    assert "meshfed.server.c" not in str(cycles[0])  # its import of a is only for type checkers

    stray = _report(pysyncobj_violations(tmp_path))
    assert "rpc/raft_client.py:1: `import pysyncobj.config`: only server/raft/ may import pysyncobj" in stray
    assert "server/raft/__init__.py" not in stray

    purity = _report(fsm_purity_violations(tmp_path))
    for expected in ("fsm/clock.py:3: `import socket`: fsm/ does no I/O",
                     "fsm/clock.py:5: `from threading import Thread`",
                     "fsm/clock.py:6: `_LOCK = threading.Lock()`: a module-wide lock",
                     "fsm/clock.py:14: `global _last`",
                     "fsm/clock.py:15: `threading.Thread`",
                     "fsm/clock.py:16: `t.time()` reads the clock",
                     "fsm/clock.py:16: `datetime.now()` reads the clock",
                     "fsm/clock.py:16: `t.gmtime()` reads the clock",
                     "fsm/clock.py:16: `open()`: fsm/ does no I/O"):
        assert expected in purity, f"{expected!r} not reported in:\n{purity}"
    assert "import time" not in purity and "fsm/clock.py:4" not in purity and "fsm/clock.py:11" not in purity
    assert purity.count("fsm/clock.py:16") == 4, purity  # gmtime(0) converts a given time: allowed

    missing = _report(package_violations(tmp_path))
    assert "server/extra/__init__.py:1: package meshfed.server.extra is missing from pyproject.toml" in missing
    assert "server/loose:0: holds modules but no __init__.py" in missing
    assert "pyproject.toml:0: lists package meshfed.rpc.gone" in missing
    assert "meshfed.server.raft" not in missing
