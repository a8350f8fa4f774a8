"""Import boundaries (ARCHITECTURE.md): zppo_core never imports the CLI, typer, submitit or optuna; mlflow and
vllm are imported in exactly one module each; the pure layers do not import the layers above them; and
`zppo --help` does not import torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "zppo_core"

# layer -> packages it must not import (imports flow cli -> train/eval -> rollout/models/tasks/tracking -> algo -> types)
FORBIDDEN = {
    "zppo_core/algo": ["zppo_core.train", "zppo_core.eval", "zppo_core.rollout", "zppo_core.models",
                       "zppo_core.tracking", "transformers", "mlflow"],
    "zppo_core/tasks": ["zppo_core.train", "zppo_core.eval", "zppo_core.rollout", "zppo_core.models", "torch"],
    "zppo_core/types.py": ["zppo_core.", "torch"],
    "zppo_core/rollout": ["zppo_core.train", "zppo_core.eval"],
    "zppo_core/tracking": ["zppo_core.train", "zppo_core.eval", "torch"],
    "zppo_core/suites": ["zppo_core.train", "zppo_core.eval", "zppo_core.models"],
    "zppo_core/models": ["zppo_core.train", "zppo_core.eval"],
    "zppo_core/train": ["zppo_core.eval"],
    "zppo_core/eval": ["zppo_core.train"],
    "zppo_core": ["zppo_cli", "typer", "submitit", "optuna"],
}
ONLY_IN = {"mlflow": {"zppo_core/tracking/mlflow_tracker.py"}, "vllm": {"zppo_core/rollout/vllm_engine.py"}}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _files(prefix: str) -> list[Path]:
    p = ROOT / prefix
    return [p] if p.is_file() else sorted(p.rglob("*.py"))


def test_layers_do_not_import_upwards():
    bad = []
    for prefix, forbidden in FORBIDDEN.items():
        for f in _files(prefix):
            for name in _imports(f):
                if any(name == fb.rstrip(".") or name.startswith(fb if fb.endswith(".") else fb + ".") or name == fb
                       for fb in forbidden):
                    bad.append(f"{f.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_mlflow_and_vllm_are_imported_in_one_module_each():
    bad = []
    for f in _files("zppo_core"):
        rel = str(f.relative_to(ROOT))
        for name in _imports(f):
            top = name.split(".")[0]
            if top in ONLY_IN and rel not in ONLY_IN[top]:
                bad.append(f"{rel} imports {name}")
    assert not bad, "\n".join(bad)


def test_cli_help_does_not_import_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom zppo_cli.app import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "r = CliRunner().invoke(app, ['train', '--help'])\nassert r.exit_code == 0, r.output\n"
            "heavy = [m for m in ('torch', 'transformers', 'mlflow') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"--help imported {out.stdout.strip()}"
