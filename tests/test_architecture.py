"""The shape of the code: small modules, one-way imports, private names kept
inside their package, and the layers of ``docs/architecture.md``.

Every module of ``dataflow/`` is parsed with :mod:`ast`; none is imported.
The rules:

1. No module is longer than 600 lines.
2. No import cycle among the modules of ``dataflow``. Only imports at module
   level count: an import inside a function runs when the function is
   called, after both modules have loaded, so it may break a cycle (as
   ``_checks.check_serializer`` does to reach ``serialize``).
3. A module imports from another package only names without a leading
   underscore (dunder names are fine). The packages are ``dataflow/`` (its
   top level), ``parallel/``, ``_transport/``, ``formats/``, ``image/``,
   ``imgaug/`` and ``dataset/``. A private *module* may hold public names
   (torch's ``_utils`` convention): ``from ..formats._files import
   shard_order`` is fine, ``from ..base import _check_seed`` is not, nor
   ``worker._begin_pass`` through an imported module. Within a package any
   name may be imported. ``_transport/__init__.py`` is the one interface of
   the transport layer.
4. The layers: ``_transport/`` uses only itself, ``_arrays``,
   ``serialize``, ``_checks`` and ``_optional``; ``remote.py`` and
   ``_remote_parts.py`` do not reach ``parallel/``; outside ``parallel/``
   only ``dataflow/__init__.py``, ``graph.py`` (which draws what runs in
   workers), ``profiling.py`` and ``_profile_verdict.py`` (which name what
   runs in workers, through ``graph.py``), ``debug.py`` (whose
   ``TestDataSpeed`` profiles whole pipelines), ``integrations/`` (which
   feeds whole pipelines to the frameworks, and looks at their workers
   through ``graph.py``) and
   ``ray.py`` (which re-exports ``parallel/ray.py``, the runner whose
   workers are Ray actors) reach it;
   ``_transport/``, ``_arrays``, ``_rng``, ``_collate`` and
   ``_worker_state`` do not reach ``base`` (every module of dataflows
   imports ``base``, so these import no module of dataflows). "Reach"
   follows imports at any depth and inside functions too.

Imports under ``if TYPE_CHECKING:`` never run: rules 2 and 4 ignore them
(they name a type for mypy only); rule 3 applies to them too. Importing
``dataflow.formats._files`` from outside ``formats/`` also runs
``formats/__init__.py``, so rules 2 and 4 count that as an import of it too
(not for ``dataflow/__init__.py``, which every import of the library runs
first).
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 600
TOP = "dataflow"

# The layers of rule 4, by module name (a package stands for all its modules).
TRANSPORT = "dataflow._transport"
TRANSPORT_MAY_USE = (
    "dataflow._arrays",
    "dataflow.serialize",
    "dataflow._checks",
    "dataflow._optional",
)
REMOTE = (
    "dataflow.remote",
    "dataflow._remote_parts",
    "dataflow._remote_inbox",
    "dataflow._remote_peers",
    "dataflow._remote_curve",
    "dataflow.serve",
    "dataflow.receive",
    "dataflow.keys",
)
PARALLEL = "dataflow.parallel"
# profiling.py reaches parallel/ through graph.py: it tells the stages that run in
# workers from those it can time, with graph.py's test for parallel dataflows.
# dataflow/ray.py is the public home of parallel/ray.py (RayRunner), which it re-exports.
ABOVE_PARALLEL = (
    "dataflow",
    "dataflow.graph",
    "dataflow.profiling",
    "dataflow._profile_verdict",
    "dataflow.debug",
    "dataflow.ray",
)
# Packages above parallel/ as a whole: the adapters that feed the frameworks take
# whole pipelines, and look at what runs in workers through graph.py.
ABOVE_PARALLEL_PACKAGES = ("dataflow.integrations",)
FOUNDATION = (
    TRANSPORT,
    "dataflow._arrays",
    "dataflow._rng",
    "dataflow._collate",
    "dataflow._worker_state",
)
DATAFLOW_CLASSES = "dataflow.base"


@dataclass
class Module:
    """One parsed module: *name* dotted, *path* relative to the repository."""

    name: str
    path: str
    is_package: bool
    source: str
    tree: ast.Module = field(init=False)

    def __post_init__(self) -> None:
        self.tree = ast.parse(self.source, self.path)

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Import:
    """*importer* reads *name* from the module *target* (``None``: the module itself)."""

    importer: str
    line: int
    target: str
    name: Optional[str]
    in_function: bool
    type_only: bool


Modules = Dict[str, Module]


def load_modules() -> Modules:
    modules = {}
    for file in sorted((ROOT / TOP).rglob("*.py")):
        parts = list(file.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        path = file.relative_to(ROOT).as_posix()
        modules[name] = Module(name, path, is_package, file.read_text(encoding="utf-8"))
    return modules


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def resolve(module: Module, level: int, name: Optional[str]) -> Optional[str]:
    """The absolute name of ``from <level dots><name> import ...`` in *module*."""
    if level == 0:
        return name
    parts = module.package.split(".")
    if level > len(parts):
        return None
    base = parts[: len(parts) - level + 1]
    return ".".join(base + ([name] if name else []))


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class ImportVisitor(ast.NodeVisitor):
    """The imports of one module from ``dataflow``, and the local names bound to its modules."""

    def __init__(self, module: Module, modules: Modules) -> None:
        self.module, self.modules = module, modules
        self.imports: List[Import] = []
        self.module_names: Dict[str, str] = {}  # local name -> module it is bound to
        self._functions = 0
        self._type_only = 0

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if not is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._type_only += 1
        for stmt in node.body:
            self.visit(stmt)
        self._type_only -= 1
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in self.modules:
                self._add(node, alias.name, None)
                bound = alias.name if alias.asname else alias.name.partition(".")[0]
                self.module_names[alias.asname or bound] = bound

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = resolve(self.module, node.level, node.module)
        if base is None or base not in self.modules:
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in self.modules:
                self._add(node, submodule, None)
                self.module_names[alias.asname or alias.name] = submodule
            else:
                self._add(node, base, alias.name)

    def _add(self, node: ast.stmt, target: str, name: Optional[str]) -> None:
        self.imports.append(
            Import(
                self.module.name,
                node.lineno,
                target,
                name,
                self._functions > 0,
                self._type_only > 0,
            )
        )


def imports_of(module: Module, modules: Modules) -> Tuple[List[Import], Dict[str, str]]:
    visitor = ImportVisitor(module, modules)
    visitor.visit(module.tree)
    return visitor.imports, visitor.module_names


def attribute_uses(module: Module, module_names: Dict[str, str], modules: Modules):
    """``(line, owner module, name)`` for every ``alias.name`` read through a module."""
    found: Set[Tuple[int, str, str]] = set()
    for node in ast.walk(module.tree):
        chain = []
        value: ast.expr = node  # type: ignore[assignment]
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if not chain or not isinstance(value, ast.Name) or value.id not in module_names:
            continue
        owner = module_names[value.id]
        for attr in reversed(chain):
            if f"{owner}.{attr}" not in modules:
                found.add((node.lineno, owner, attr))
                break
            owner = f"{owner}.{attr}"
    return sorted(found)


def all_imports(modules: Modules) -> List[Import]:
    return [imp for module in modules.values() for imp in imports_of(module, modules)[0]]


def edges(
    modules: Modules, imports: Iterable[Import], *, module_level_only: bool
) -> Dict[str, Dict[str, int]]:
    """importer -> {imported module: first line}, for the imports that run.

    Importing a module of a subpackage from outside it also runs the
    subpackage's ``__init__.py``, which counts as imported on the same line.
    """
    graph: Dict[str, Dict[str, int]] = {name: {} for name in modules}
    for imp in imports:
        if imp.type_only or (module_level_only and imp.in_function) or imp.target == imp.importer:
            continue
        parts = imp.target.split(".")
        for i in range(2, len(parts) + 1):
            reached = ".".join(parts[:i])
            if reached in modules and not in_package(imp.importer, reached):
                graph[imp.importer].setdefault(reached, imp.line)
        graph[imp.importer].setdefault(imp.target, imp.line)
    return graph


def find_cycles(graph: Dict[str, Dict[str, int]]) -> List[List[str]]:
    """One cycle (its modules in import order, first repeated last) per set of modules."""
    cycles, seen = [], set()
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    cycles.append(cycle)
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def find_path(
    graph: Dict[str, Dict[str, int]], start: str, goal: Callable[[str], bool]
) -> Optional[List[str]]:
    """The shortest chain of imports from *start* to a module that is *goal*, if any."""
    previous: Dict[str, Optional[str]] = {start: None}
    queue = [start]
    for node in queue:
        for nxt in sorted(graph[node]):
            if nxt in previous:
                continue
            previous[nxt] = node
            if goal(nxt):
                chain: List[str] = [nxt]
                while previous[chain[-1]] is not None:
                    chain.append(previous[chain[-1]])  # type: ignore[arg-type]
                return chain[::-1]
            queue.append(nxt)
    return None


def describe_chain(modules: Modules, graph: Dict[str, Dict[str, int]], chain: List[str]) -> str:
    steps = [f"{modules[a].path}:{graph[a][b]} imports {b}" for a, b in zip(chain, chain[1:])]
    return ", ".join(steps)


def package_dir(package: str) -> str:
    return package.replace(".", "/") + "/"


PRIVATE_RULE = "private names stay inside their package"
PRIVATE_ADVICE = (
    "give the name no underscore in a private module of its package (alias it locally "
    "if you like) and use that"
)


def private_name_violations(modules: Modules) -> List[str]:
    found = []
    for module in modules.values():
        imports, module_names = imports_of(module, modules)
        for imp in imports:
            owner = modules[imp.target].package
            if imp.name is not None and is_private(imp.name) and owner != module.package:
                found.append(
                    f"{module.path}:{imp.line}: imports the private name {imp.name} from "
                    f"{imp.target}, in another package ({package_dir(owner)}), breaking "
                    f"the rule '{PRIVATE_RULE}'. To fix: {PRIVATE_ADVICE}."
                )
        for line, owner_module, name in attribute_uses(module, module_names, modules):
            owner = modules[owner_module].package
            if is_private(name) and owner != module.package:
                found.append(
                    f"{module.path}:{line}: reads the private name {owner_module}.{name}, "
                    f"in another package ({package_dir(owner)}), breaking the rule "
                    f"'{PRIVATE_RULE}'. To fix: {PRIVATE_ADVICE}."
                )
    return found


def cycle_violations(modules: Modules) -> List[str]:
    graph = edges(modules, all_imports(modules), module_level_only=True)
    return [
        f"{modules[cycle[0]].path}:{graph[cycle[0]][cycle[1]]}: import cycle at module "
        f"level ({describe_chain(modules, graph, cycle)}), breaking the rule 'imports go "
        "one way'. To fix: move what they share into a lower module, or import inside "
        "the function that needs it."
        for cycle in find_cycles(graph)
    ]


@dataclass(frozen=True)
class Layer:
    """Modules that are *starts* must not reach a module that is *forbidden*."""

    rule: str
    advice: str
    starts: Callable[[str], bool]
    forbidden: Callable[[str], bool]


def any_of(*packages: str) -> Callable[[str], bool]:
    return lambda name: any(in_package(name, p) for p in packages)


LAYERS = (
    Layer(
        "the transport layer uses only itself, _arrays, serialize, _checks and _optional",
        "it moves messages and knows nothing of dataflows, runners or seeds: pass what it "
        "needs in as arguments, or move the code to the caller",
        any_of(TRANSPORT),
        lambda name: not any_of(TRANSPORT, *TRANSPORT_MAY_USE)(name),
    ),
    Layer(
        "remote.py and _remote_parts.py do not use parallel/",
        "use dataflow._transport, which both build on",
        any_of(*REMOTE),
        any_of(PARALLEL),
    ),
    Layer(
        "outside parallel/, only dataflow/__init__.py, graph.py, profiling.py, "
        "_profile_verdict.py, debug.py, integrations/ and ray.py use parallel/",
        "parallel/ is above the sources and wrappers: move the code into parallel/, or "
        "what parallel/ and this module share into a lower module",
        lambda name: (
            not any_of(PARALLEL, *ABOVE_PARALLEL_PACKAGES)(name) and name not in ABOVE_PARALLEL
        ),
        any_of(PARALLEL),
    ),
    Layer(
        "_transport/, _arrays, _rng, _collate and _worker_state import no module of "
        "dataflows (none reaches dataflow.base)",
        "they are the foundation the dataflows build on: pass what they need in as "
        "arguments, or import a type for mypy only under `if TYPE_CHECKING:`",
        any_of(*FOUNDATION),
        any_of(DATAFLOW_CLASSES),
    ),
)


def layer_violations(modules: Modules) -> List[str]:
    graph = edges(modules, all_imports(modules), module_level_only=False)
    found = []
    for layer in LAYERS:
        for name in sorted(modules):
            if not layer.starts(name):
                continue
            chain = find_path(graph, name, layer.forbidden)
            if chain is not None:
                found.append(
                    f"{modules[name].path}:{graph[name][chain[1]]}: breaks the rule "
                    f"'{layer.rule}' ({describe_chain(modules, graph, chain)}). "
                    f"To fix: {layer.advice}."
                )
    return found


def report(violations: List[str]) -> str:
    return f"{len(violations)} violation(s):\n" + "\n".join(violations)


MODULES = load_modules()


class TestModuleSize:
    def test_no_module_is_longer_than_600_lines(self):
        too_long = [
            f"{m.path}:{MAX_LINES + 1}: {len(m.source.splitlines())} lines, breaking the "
            f"rule 'no module over {MAX_LINES} lines'. To fix: split it by concern into "
            "modules of its package (private ones may hold public names)."
            for m in MODULES.values()
            if len(m.source.splitlines()) > MAX_LINES
        ]
        assert not too_long, report(too_long)


class TestImports:
    def test_no_import_cycle_at_module_level(self):
        cycles = cycle_violations(MODULES)
        assert not cycles, report(cycles)

    def test_no_private_name_crosses_a_package_boundary(self):
        violations = private_name_violations(MODULES)
        assert not violations, report(violations)

    def test_every_layer_imports_only_what_is_below_it(self):
        violations = layer_violations(MODULES)
        assert not violations, report(violations)

    def test_the_checker_sees_the_imports_of_the_code(self):
        graph = edges(MODULES, all_imports(MODULES), module_level_only=False)
        assert "dataflow._transport" in graph["dataflow.parallel.runner"]
        assert "dataflow.serialize" in graph["dataflow._checks"]  # inside a function
        assert find_path(graph, "dataflow", any_of(PARALLEL)) is not None


def fake_modules(sources: Dict[str, str]) -> Modules:
    """Modules named as the keys (``pkg/`` marks a package), with these sources."""
    modules = {}
    for key, source in sources.items():
        name, is_package = key.rstrip("/"), key.endswith("/")
        path = name.replace(".", "/") + ("/__init__.py" if is_package else ".py")
        modules[name] = Module(name, path, is_package, textwrap.dedent(source))
    return modules


class TestChecker:
    """The checks find what they should in made-up modules."""

    def test_finds_a_private_name_imported_from_another_package(self):
        modules = fake_modules(
            {
                "dataflow/": "",
                "dataflow.base": "_seed = 1\nseed = 1\n",
                "dataflow.formats/": "",
                "dataflow.formats.a": "from ..base import seed\nfrom ..base import _seed\n",
            }
        )
        (violation,) = private_name_violations(modules)
        assert violation.startswith(
            "dataflow/formats/a.py:2: imports the private name _seed from dataflow.base, in "
            "another package (dataflow/), breaking the rule 'private names stay inside"
        )

    def test_allows_private_modules_dunders_and_private_names_of_the_own_package(self):
        modules = fake_modules(
            {
                "dataflow/": "from ._x import _y\nfrom . import __version__\n",
                "dataflow._x": "_y = 1\n",
                "dataflow.parallel/": "",
                "dataflow.parallel.a": "from .. import _x\nfrom .._x import y\n",
            }
        )
        assert private_name_violations(modules) == []

    def test_finds_a_private_name_read_through_an_imported_module(self):
        modules = fake_modules(
            {
                "dataflow/": "",
                "dataflow.worker": "def _begin(): pass\n",
                "dataflow.parallel/": "",
                "dataflow.parallel.a": "from .. import worker\n\n\nworker._begin()\n",
                "dataflow.parallel.b": "import dataflow.worker\n\ndataflow.worker._begin()\n",
            }
        )
        violations = private_name_violations(modules)
        assert [v.split(": ")[0] for v in violations] == [
            "dataflow/parallel/a.py:4",
            "dataflow/parallel/b.py:3",
        ]

    def test_finds_a_cycle_but_not_through_a_function_or_type_checking(self):
        modules = fake_modules(
            {
                "dataflow/": "",
                "dataflow.a": "from .b import x\n",
                "dataflow.b": "from .c import y\nx = 1\n",
                "dataflow.c": "from .a import z\n",
                "dataflow.d": "from .e import x\n",
                "dataflow.e": (
                    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import y\n"
                    "def f():\n    from .d import z\n"
                ),
            }
        )
        (violation,) = cycle_violations(modules)
        assert violation.startswith(
            "dataflow/a.py:1: import cycle at module level (dataflow/a.py:1 imports "
            "dataflow.b, dataflow/b.py:1 imports dataflow.c, dataflow/c.py:1 imports "
            "dataflow.a), breaking the rule 'imports go one way'."
        )

    def test_finds_a_layer_broken_through_another_module(self):
        modules = fake_modules(
            {
                "dataflow/": "",
                "dataflow.base": "",
                "dataflow._arrays": "def f():\n    from .helpers import g\n",
                "dataflow.helpers": "from .base import DataFlow\n",
            }
        )
        (violation,) = layer_violations(modules)
        assert violation.startswith(
            "dataflow/_arrays.py:2: breaks the rule '_transport/, _arrays, _rng, _collate and "
            "_worker_state import no module of dataflows (none reaches dataflow.base)' "
            "(dataflow/_arrays.py:2 imports dataflow.helpers, "
            "dataflow/helpers.py:1 imports dataflow.base). To fix:"
        )
