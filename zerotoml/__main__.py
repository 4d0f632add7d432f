"""``python -m zerotoml`` (or ``zerotoml``): list the examples; ``run <name> [options]`` runs one.

An example is a script ``examples/<name>.py`` with a one-line module docstring and a
``main(argv) -> int | None`` function. Note: notes/training.md#the-examples-cli.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from pathlib import Path

USAGE = """usage: python -m zerotoml                      list the examples
       python -m zerotoml run NAME [--engine fast|reference] [OPTIONS]
                                                 run one (``run NAME --help`` lists its options)

--engine: "fast" (the default for examples: torch's fused kernels, the einsum planner,
          the measured matrix-product library) or "reference" (every layer as its formula,
          the code the notes explain); see notes/performance.md#engines"""


def split_engine(argv: list[str]) -> tuple[str, list[str]]:
    """``--engine NAME`` (or ``--engine=NAME``) taken out of an example's options: (engine, the
    rest). Default "fast", or ``$ZEROTOML_ENGINE`` where it is set. A bad value is a ValueError."""
    from . import engine

    name, rest, i = os.environ.get("ZEROTOML_ENGINE", "").strip().lower() or "fast", [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--engine" or a.startswith("--engine="):
            if a == "--engine":
                if i + 1 >= len(argv):
                    raise ValueError("--engine needs a value: fast or reference")
                value, i = argv[i + 1], i + 2
            else:
                value, i = a.split("=", 1)[1], i + 1
            name = value.strip().lower()
            continue
        rest.append(a)
        i += 1
    if name not in engine.ENGINES:
        raise ValueError(f"--engine {name!r}: expected one of {', '.join(engine.ENGINES)}")
    return name, rest


def examples_dir() -> Path:
    """``$ZEROTOML_EXAMPLES``, else the ``examples/`` folder beside the package (a checkout)."""
    env = os.environ.get("ZEROTOML_EXAMPLES")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "examples"


def find_examples(folder: Path | None = None) -> dict[str, tuple[Path, str]]:
    """name -> (script, first line of its docstring), read without importing the script."""
    folder = folder or examples_dir()
    found = {}
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        if path.name.startswith("_"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        except SyntaxError:
            doc = "(does not parse)"
        found[path.stem] = (path, doc.strip().splitlines()[0] if doc.strip() else "")
    return found


def list_examples(out=None) -> None:
    out = out or sys.stdout
    found = find_examples()
    if not found:
        print(f"no examples found in {examples_dir()} (they ship with a checkout of the repository; "
              f"set ZEROTOML_EXAMPLES to their folder)", file=out)
        return
    width = max(len(n) for n in found)
    print(f"examples in {examples_dir()}:", file=out)
    for name, (_, doc) in found.items():
        print(f"  {name:<{width}}  {doc}", file=out)
    print("\nrun one with: python -m zerotoml run NAME [--steps N ...]  (NAME --help for its options)", file=out)


def run_example(name: str, argv: list[str]) -> int:
    found = find_examples()
    key = name.removesuffix(".py").replace("-", "_")
    if key not in found:
        known = ", ".join(found) or f"none (no examples in {examples_dir()})"
        print(f"zerotoml: unknown example {name!r}; known examples: {known}", file=sys.stderr)
        return 2
    try:
        engine_name, argv = split_engine(argv)
    except ValueError as e:
        print(f"zerotoml run {key}: {e}", file=sys.stderr)
        return 2
    path = found[key][0]
    spec = importlib.util.spec_from_file_location(f"zerotoml_example_{key}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and typing resolve names through it
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        print(f"zerotoml: example {str(path)!r} has no main(argv) function", file=sys.stderr)
        return 2
    from . import engine

    if "-h" in argv or "--help" in argv:
        print("(the runner takes --engine fast|reference, default fast, before or among these options)")
    if engine_name == "fast":
        # a training step's temporaries come back without page faults (notes/performance.md#the-allocator)
        engine.memory.keep_freed_memory()
    print(f"engine: {engine_name}" + (" (--engine reference runs every layer as its formula)"
                                      if engine_name == "fast" else ""), flush=True)
    with engine.use(engine_name):  # (the previous engine again afterwards, for a caller in-process)
        code = module.main(argv)
    return int(code or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("list", "ls"):
        list_examples()
        return 0
    if argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] == "run":
        if len(argv) < 2:
            print("zerotoml run: which example? " + (", ".join(find_examples()) or "(none found)"),
                  file=sys.stderr)
            return 2
        return run_example(argv[1], argv[2:])
    print(f"zerotoml: unknown command {argv[0]!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
