"""Every third-party package the code imports is declared, in the extra of the role that runs
it (pyproject): nothing works only because another package happened to pull it in.

Roles: the core (decoder, checkpoint and swipe stores) needs the plain dependencies; the
sidecar `serve`; a device's SuperNode `node`; the ServerApp `server`; federated training `sim`;
the loopback deployment `deploy`; tests and benchmarks `dev`; scripts/make_lexicon.py `lexicon`.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
CORE = ("fl_app/base", "fl_app/checkpoints", "fl_app/decoder", "fl_app/swipes")
# Where code lives -> the extras that, with the core, must cover its imports.
ROLES: dict[tuple[str, ...], tuple[str, ...]] = {
    CORE: (),
    ("serve",): ("serve",),
    ("fl_app/federation", "fl_app/synthetic", "fl_app/datasets", "fl_app/pretrain"): ("sim",),
    ("fl_app/deploy",): ("deploy",),
    ("tests", "bench"): ("dev",),
    ("scripts",): ("dev", "lexicon"),
}
PROJECT = "swipe-fl"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(spec: str) -> tuple[str, set[str]]:
    """`name[extra,...]>=1; marker` -> (name, extras)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", spec)
    assert match, spec
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return _norm(match.group(1)), extras


@cache
def _project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]


def requirements(extras: tuple[str, ...]) -> dict[str, set[str]]:
    """What the core plus `extras` install directly: name -> the extras asked of it (the
    project's own extras, `swipe-fl[serve,sim]`, expanded)."""
    optional = _project()["optional-dependencies"]
    out: dict[str, set[str]] = {}
    seen = set(extras)

    def add(specs: list[str]) -> None:
        for spec in specs:
            name, more = _requirement(spec)
            if name != PROJECT:
                out.setdefault(name, set()).update(more)
            for extra in sorted(more - seen) if name == PROJECT else ():
                seen.add(extra)
                add(optional[extra])

    add(_project()["dependencies"])
    for extra in extras:
        add(optional[extra])
    return out


def declared(extras: tuple[str, ...]) -> set[str]:
    return set(requirements(extras))


def _local_modules() -> set[str]:
    names = {"fl_app", "serve", "server_app", "client_app"}
    return names | {p.stem for d in ("tests", "bench", "scripts") for p in (ROOT / d).glob("*.py")}


def imported(place: str) -> set[str]:
    """Top-level third-party modules imported anywhere under `place` (lazy imports included)."""
    local, found = _local_modules(), set()
    for path in (ROOT / place).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            found |= {m.split(".")[0] for m in mods}
    return {m for m in found if m not in sys.stdlib_module_names and m not in local}


def distributions(modules: set[str]) -> dict[str, set[str]]:
    """Module -> the distributions that provide it (its own name when none is installed)."""
    known = packages_distributions()
    return {m: {_norm(d) for d in known.get(m, [m])} for m in modules}


@pytest.mark.parametrize("places", list(ROLES), ids=lambda p: "+".join(p))
def test_each_import_is_declared_for_its_role(places):
    allowed = declared(ROLES[places])
    missing = {
        f"{place}: {module}"
        for place in places
        for module, dists in distributions(imported(place)).items()
        if not dists & allowed
    }
    assert not missing, f"declare in pyproject ({ROLES[places] or 'dependencies'}): {missing}"


def test_devices_and_servers_get_no_training_stack():
    training = {"ray", "hydra-core", "omegaconf", "matplotlib", "tqdm"}
    device = requirements(("serve", "node"))
    assert not set(device) & training
    assert "flwr" not in requirements(("serve",))
    # Ray comes with flwr[simulation], which only the simulation asks for.
    for role in (("serve", "node"), ("server",)):
        assert not requirements(role).get("flwr"), role
    assert "simulation" in requirements(("sim",))["flwr"]
    # uvicorn without [standard]: the sidecar needs no file watcher, websockets or dotenv.
    assert requirements(("serve",))["uvicorn"] == set()


def test_the_scan_sees_lazy_imports():
    # tls.py imports cryptography inside functions only; make_lexicon.py needs wordfreq.
    assert "cryptography" in imported("fl_app/deploy")
    assert "wordfreq" in imported("scripts")
