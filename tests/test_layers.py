"""The architecture's rules, checked on the source itself (read with ast, never imported) and on
what real processes import.

Layers, each importing only those below it (and itself):
1. runtime, the edge install;
2. benchmarks.eval (evaluation data and metrics) and benchmarks.errors;
3. exporters and benchmarks.bench (`sumctl bench`), which do not import each other;
4. benchmarks.perf and cli, which do not import each other.
No import crosses a leading underscore, in code or in tests, and the modules import each
other without cycles. The edge runtime carries no torch, and starting the CLI imports neither
numpy nor anything that only measures.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"cli": "sumctl.cli", "runtime": "sumctl.runtime", "exporters": "sumctl.exporters",
            "benchmarks": "sumctl.benchmarks"}
# (module prefix, layer, group): a module may import a lower layer, or its own group.
LAYERS = [
    ("sumctl.runtime", 1, "runtime"),
    ("sumctl.benchmarks.eval", 2, "eval"),
    ("sumctl.benchmarks.errors", 2, "eval"),
    ("sumctl.benchmarks.bench", 3, "bench"),
    ("sumctl.exporters", 3, "exporters"),
    ("sumctl.benchmarks.perf", 4, "perf"),
    ("sumctl.cli", 4, "cli"),
    ("sumctl.benchmarks", 2, "eval"),  # the package's own __init__: a docstring
]


def layer_of(module: str) -> tuple[int, str]:
    for prefix, layer, group in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer, group
    raise AssertionError(f"{module}: in no layer; add it to LAYERS")


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO)
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    found = {}
    for top in PACKAGES:
        for path in sorted((REPO / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports(path: Path, module: str, *, top_level_only: bool = False) -> list[tuple[int, str, str | None]]:
    """(line, imported module, imported name or None) for every import in the file; with
    top_level_only, those that run when the module is imported (not in functions or under
    `if TYPE_CHECKING`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = []
    if top_level_only:
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            nodes.append(node)
            stack.extend(ast.iter_child_nodes(node))
    else:
        nodes = list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                found.append((node.lineno, base, alias.name))
    return found


def resolve(target: str, name: str | None, modules: dict[str, Path]) -> str:
    """The sumctl module an import really loads: `from pkg import mod` is the module."""
    if name and f"{target}.{name}" in modules:
        return f"{target}.{name}"
    return target


def layering_violations(modules: dict[str, Path]) -> list[str]:
    bad = []
    for module, path in modules.items():
        layer, group = layer_of(module)
        for line, target, name in imports(path, module):
            if not target.startswith("sumctl."):
                continue
            target = resolve(target, name, modules)
            their_layer, their_group = layer_of(target)
            if their_layer > layer or (their_layer == layer and their_group != group):
                bad.append(f"{shown(path)}:{line}: {module} (layer {layer}, {group}) "
                           f"imports {target} (layer {their_layer}, {their_group})")
    return bad


def private_imports(files: list[Path], modules: dict[str, Path]) -> list[str]:
    """Imports of a name or module that starts with an underscore from somewhere else."""
    bad = []
    for path in files:
        in_package = path.is_relative_to(REPO) and path.relative_to(REPO).parts[0] in PACKAGES
        for line, target, name in imports(path, module_name(path) if in_package else path.stem):
            parts = target.split(".") + ([name] if name else [])
            private = [p for p in parts if p.startswith("_") and not (p.startswith("__") and p.endswith("__"))]
            if private:
                bad.append(f"{shown(path)}:{line}: imports {'.'.join(parts)}")
    return bad


def cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Strongly connected components of more than one module in the import-time graph."""
    graph = {m: sorted({resolve(t, n, modules) for _, t, n in imports(p, m, top_level_only=True)
                        if t.startswith("sumctl.")} & set(modules) - {m})
             for m, p in modules.items()}
    index, low, on_stack, stack, result, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            # A package and the submodules its __init__ re-exports import each other by design.
            if len(component) > 1 and not all(c.startswith(min(component) + ".") or c == min(component)
                                              for c in component):
                result.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return result


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    found = source_modules()
    # The scan itself must have seen the code, or every rule below would pass on nothing.
    assert len(found) > 60 and {"sumctl.runtime.summarizer", "sumctl.cli.main",
                                "sumctl.exporters.gguf.export", "sumctl.benchmarks.bench.runner",
                                "sumctl.benchmarks.eval.metrics"} <= set(found)
    return found


def test_each_layer_imports_only_the_layers_below_it(modules):
    assert layering_violations(modules) == []


def test_the_checker_sees_imports_and_catches_a_violation(modules, tmp_path):
    summarizer = imports(modules["sumctl.runtime.summarizer"], "sumctl.runtime.summarizer")
    assert any(t == "sumctl.runtime.backends.base" for _, t, _ in summarizer)
    # A runtime module that reaches up into the bench, and one that imports a private name.
    planted = tmp_path / "probe.py"
    planted.write_text("def f():\n    from sumctl.benchmarks.bench.runner import run_bench\n"
                       "from sumctl.runtime.summarizer import _private\n")
    with_probe = {**modules, "sumctl.runtime.probe": planted}
    assert any("sumctl.runtime.probe" in v and "benchmarks.bench.runner" in v
               for v in layering_violations(with_probe))
    assert any("_private" in v for v in private_imports([planted], with_probe))


def test_no_import_crosses_a_leading_underscore(modules):
    files = list(modules.values()) + sorted((REPO / "tests").rglob("*.py"))
    assert private_imports(files, modules) == []


def test_no_import_cycles(modules):
    assert cycles(modules) == []


def test_the_cycle_finder_finds_one(tmp_path):
    fake = {"sumctl.runtime.a": tmp_path / "a.py", "sumctl.runtime.b": tmp_path / "b.py"}
    fake["sumctl.runtime.a"].write_text("import sumctl.runtime.b\n")
    fake["sumctl.runtime.b"].write_text("from sumctl.runtime import a\n")
    assert cycles(fake) == [["sumctl.runtime.a", "sumctl.runtime.b"]]


# --- one name, one meaning -----------------------------------------------------------------------

# Names that mean the same thing wherever they stand: a console script's entry point, the hook
# through which each CLI module registers its commands (as llm's plug-ins do), and a module's own
# logger.
SHARED_NAMES = {"main", "register", "log"}


def public_definitions(path: Path) -> list[tuple[str, int]]:
    """The public names a module defines at its top level (functions, classes, assignments);
    re-exports by import are not definitions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        else:
            names = []
        found += [(name, node.lineno) for name in names if not name.startswith("_")]
    return found


def doubled_names(paths: list[Path]) -> list[str]:
    where: dict[str, list[str]] = {}
    for path in paths:
        for name, line in public_definitions(path):
            where.setdefault(name, []).append(f"{shown(path)}:{line}")
    return [f"{name}: {', '.join(places)}" for name, places in sorted(where.items())
            if len(places) > 1 and name not in SHARED_NAMES]


def test_no_two_public_top_level_names_are_the_same(modules):
    """Two public `Status` (or `clean_text`) mean two things under one name, and an import of
    the wrong one reads right: the watcher's length-versus-variant bug came from such a pair."""
    paths = [p for m, p in modules.items() if m.split(".")[1] in ("runtime", "exporters", "cli")]
    assert doubled_names(paths) == []


def test_the_doubled_name_finder_finds_one(tmp_path):
    (tmp_path / "a.py").write_text("class Status:\n    pass\nmain = 1\n")
    (tmp_path / "b.py").write_text("import os\nStatus = 2\ndef main():\n    pass\n")
    [found] = doubled_names([tmp_path / "a.py", tmp_path / "b.py"])
    assert found.startswith("Status: ") and "a.py:1" in found and "b.py:2" in found


# Issue 26: an orchestrator that outgrows a screen hides its steps; name them instead.
LONGEST_FUNCTION = 60


def long_functions(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST_FUNCTION:
                    found.append(f"{shown(path)}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_no_function_in_runtime_or_exporters_is_over_60_lines(modules):
    paths = [p for m, p in modules.items() if m.split(".")[1] in ("runtime", "exporters")]
    assert long_functions(paths) == []


def test_the_long_function_finder_finds_one(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(LONGEST_FUNCTION))
    (tmp_path / "a.py").write_text(f"def short():\n    pass\n\n\ndef long():\n{body}")
    assert long_functions([tmp_path / "a.py"]) == [f"{tmp_path / 'a.py'}:5 long: {LONGEST_FUNCTION + 1} lines"]


# --- what real processes import ----------------------------------------------------------------

TORCH = ("torch", "transformers", "optimum")


def _run(code: str, banned: tuple[str, ...]) -> None:
    probe = code + (f"\nimport sys\nheavy = sorted(m for m in sys.modules if m.split('.')[0] in "
                    f"{banned!r} or any(m.startswith(b + '.') or m == b for b in {banned!r}))\n"
                    "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_runtime_module_imports_without_torch(modules):
    names = [m for m in modules if m.startswith("sumctl.runtime")]
    _run("import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in names)
         + "import sumctl.cli.main\n", TORCH)


@pytest.mark.parametrize("args", [["--help"], ["summarize", "--help"], ["watch", "--help"],
                                  ["batch", "--help"]])
def test_starting_the_cli_imports_no_numpy_and_nothing_that_measures(args):
    _run(f"import sys\nsys.argv = ['sumctl', *{args!r}]\nfrom sumctl.cli.main import cli\n"
         "try:\n    cli()\nexcept SystemExit:\n    pass\n",
         ("numpy", "sumctl.benchmarks", "rouge_score", "psutil", "matplotlib", "ray", "pyarrow",
          "pandas", *TORCH))


WEB_STACK = ("fastapi", "uvicorn", "starlette", "prometheus_client", "jinja2", "multipart", "anyio")


def test_only_the_serve_app_imports_the_web_stack(modules):
    """The serve extra's libraries are imported by cli/serve_app.py alone (which cli/serve.py
    imports in its command's body), so that nothing else needs the extra."""
    bad = [f"{shown(path)}:{line}: imports {target}"
           for module, path in modules.items() if module != "sumctl.cli.serve_app"
           for line, target, _ in imports(path, module) if target.split(".")[0] in WEB_STACK]
    assert bad == []


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"]])
def test_starting_the_cli_imports_no_web_stack(args):
    """FastAPI, uvicorn and the rest of the serve extra load only when `sumctl serve` runs
    (cli/serve_app.py): the edge install has none of them."""
    _run(f"import sys\nsys.argv = ['sumctl', *{args!r}]\nfrom sumctl.cli.main import cli\n"
         "try:\n    cli()\nexcept SystemExit:\n    pass\n",
         (*WEB_STACK, "httpx", "sumctl.cli.serve_app"))


def test_a_summarize_run_pulls_in_no_torch(tmp_path):
    (tmp_path / "m.txt").write_text("Ann: We will ship on Friday after the export fix lands.\n"
                                    "Bob: I will write the release notes tomorrow morning.\n")
    _run(f"""
from sumctl.runtime.backends.extractive import build_extractive_bundle
from sumctl.runtime import Summarizer
s = Summarizer(build_extractive_bundle({str(tmp_path / 'b')!r}))
assert s.summarize({str(tmp_path / 'm.txt')!r}).text
""", TORCH)


@pytest.mark.parametrize("fixture", ["tiny_t5_bundle", "smollm2_q8_bundle"])
def test_neural_backends_pull_in_no_torch(request, fixture, tmp_path):
    bundle = request.getfixturevalue(fixture)
    path = getattr(bundle, "path", bundle)
    (tmp_path / "m.txt").write_text("Ann: We will ship on Friday after the export fix lands.\n")
    _run(f"""
from sumctl.runtime import Summarizer
assert Summarizer({str(path)!r}, max_summary_tokens=8).summarize({str(tmp_path / 'm.txt')!r}) is not None
""", TORCH)
