"""CDK app benchmark: synth time with and without CDK's built-in template validation, and the
unzipped size of each Lambda bundle.

Bundles come from the warm ``.cache/bundles`` (the first run pip-installs them). Compare the
two synth times as a ratio within one run. Usage: .venv/bin/python benchmarks/bench_cdk.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aws_cdk import App  # noqa: E402

from infra.app import build  # noqa: E402
from infra.bundling import tree_size  # noqa: E402
from onnxkit.config import load_config  # noqa: E402


def synth(outdir: Path, *, validation: bool, overrides: dict[str, str] | None = None) -> float:
    """Seconds to build and synthesize the dev app into ``outdir``."""
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    start = time.perf_counter()
    app = App(outdir=str(outdir), context=context, builtin_cloud_formation_validation=validation)
    build(app, load_config("dev", overrides or {}))
    app.synth()
    return time.perf_counter() - start


def bundle_sizes(outdir: Path) -> dict[str, float]:
    """MB (10^6 bytes) of each staged Lambda asset, by handler."""
    sizes = {}
    for template in outdir.glob("*.template.json"):
        for resource in json.loads(template.read_text())["Resources"].values():
            handler = resource["Properties"].get("Handler", "")
            if resource["Type"] == "AWS::Lambda::Function" and handler.startswith("functions."):
                key = resource["Properties"]["Code"]["S3Key"].removesuffix(".zip")
                sizes[resource["Properties"]["Handler"]] = tree_size(outdir / f"asset.{key}") / 1e6
    return sizes


def main() -> None:
    """Print the table."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synth(root / "warmup", validation=False)  # jsii start-up and bundle cache
        off = synth(root / "off", validation=False)
        on = synth(root / "on", validation=True)
        x86 = synth(root / "x86", validation=False, overrides={"lambda.architecture": "x86_64"})
        print(f"synth dev, validation off : {off:6.1f} s")
        print(f"synth dev, validation on  : {on:6.1f} s  ({on / off:.2f}x)")
        print(f"synth dev x86_64, off     : {x86:6.1f} s")
        for label, outdir in (("arm64", root / "off"), ("x86_64", root / "x86")):
            for handler, size in sorted(bundle_sizes(outdir).items()):
                print(f"bundle {label:6} {handler:45} {size:7.1f} MB unzipped")


if __name__ == "__main__":
    main()
