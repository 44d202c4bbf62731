"""The dependency rules of pyproject.toml's [tool.importlinter] hold, can fail, and cover
every module of the package."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import onnxkit

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)},
        timeout=300,
    )


def test_the_rules_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and " 0 broken" in result.stdout


def test_every_onnxkit_module_is_placed_by_the_rules() -> None:
    # A new top-level module must be named in the kernel rule, or the kernel could import it.
    kernel = next(c for c in _config()["contracts"] if c["id"] == "kernel")
    named = {m for m in kernel["forbidden_modules"] if m.startswith("onnxkit.")}
    modules = {f"onnxkit.{m.name}" for m in pkgutil.iter_modules(onnxkit.__path__)}
    assert modules - {"onnxkit.contract"} == named


def test_a_broken_rule_is_reported(tmp_path: Path) -> None:
    # The same rules over a copy where the kernel imports the CLI and a runtime the shell.
    for package in ("onnxkit", "functions", "training_jobs", "infra"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "onnxkit" / "contract" / "leak.py").write_text("import onnxkit.cli\n")
    (tmp_path / "functions" / "inference" / "leak.py").write_text("import onnxkit.local\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "imports nothing else of onnxkit BROKEN" in result.stdout
    assert "runtimes import only the kernel of onnxkit BROKEN" in result.stdout
    assert "onnxkit.contract.leak -> onnxkit.cli" in result.stdout
