"""The shape of the code base: no import cycles inside the library, nothing outside tests
reaches into examples/, and every "spec section N" names a section of docs/spec.md."""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python_files(*folders):
    for folder in folders:
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(directory, name)


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _imports(path):
    """The modules `path` imports at its top level (not inside functions)."""
    tree = ast.parse(open(path).read())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_the_library_has_no_import_cycles():
    modules = {_module_name(p): p for p in _python_files("drloc_keras", "drloc_ref")}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    # A package imports its submodules by design; a submodule importing its own package's
    # __init__ is what would close a cycle.
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert len(graph) > 20 and cycles == []


def test_no_library_script_or_benchmark_imports_the_examples():
    offenders = []
    for path in _python_files("drloc_keras", "drloc_ref", "scripts", "benchmarks", "examples"):
        text = open(path).read()
        names = _imports(path)
        if "train_cifar" in names or "small_data_study" in names or re.search(r"sys\.path.*examples", text):
            offenders.append(os.path.relpath(path, ROOT))
    assert offenders == []


def test_no_test_imports_an_example():
    examples = {name[:-3] for name in os.listdir(os.path.join(ROOT, "examples")) if name.endswith(".py")}
    offenders = [os.path.relpath(p, ROOT) for p in _python_files("tests") if _imports(p) & examples]
    assert len(examples) >= 3 and offenders == []


def test_every_spec_section_cited_in_the_code_exists_in_docs_spec_md():
    spec = open(os.path.join(ROOT, "docs", "spec.md")).read()
    sections = {int(n) for n in re.findall(r"^## (\d+)\.", spec, flags=re.M)}
    cited = {}
    for path in _python_files("drloc_keras", "drloc_ref"):
        for number in re.findall(r"spec sections? (\d+)", open(path).read()):
            cited.setdefault(int(number), []).append(os.path.relpath(path, ROOT))
    assert cited, "no citation found: the pattern is wrong"
    missing = {n: files for n, files in cited.items() if n not in sections}
    assert missing == {}


def test_the_package_requires_no_backend_and_offers_each_as_an_extra():
    """`pip install drloc[jax]` or `[torch]` installs no TensorFlow; `[tensorflow]` is the
    README's install (Keras' default backend)."""
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    names = [d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]]
    assert not {"tensorflow", "tensorflow-cpu", "jax", "torch", "tensorboard"} & set(names), names
    extras = project["optional-dependencies"]
    assert "tensorflow" in extras["tensorflow"] and extras["jax"] == ["jax"] and extras["torch"] == ["torch"]
    for extra in ("jax", "torch"):
        assert not any("tensorflow" in d for d in extras[extra])
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert 'pip install -e ".[tensorflow]"' in readme and 'pip install "drloc[jax]"' in readme
