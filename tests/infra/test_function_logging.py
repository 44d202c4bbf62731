"""Lambda's advanced logging controls on every function of the kit, in every stack."""

from __future__ import annotations

from typing import Any

from infra.constructs.inference_function import INFERENCE_HANDLER
from tests.infra.conftest import SYNTH_GROUP, Synthesized

pytestmark = SYNTH_GROUP


def _kit_functions(kit: Synthesized) -> dict[str, dict[str, Any]]:
    """The kit's own functions (handlers in functions/), by stack and logical id. CDK's own
    deploy-time helpers (the custom resource providers that empty buckets or set up the log
    retention, Node.js code of aws-cdk-lib) run a few times per deployment and are not
    configurable through their constructs: they keep Lambda's defaults."""
    found = {}
    for stack, template in kit.templates.items():
        for name, resource in template["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::Lambda::Function" and str(
                props.get("Handler", "")
            ).startswith("functions."):
                found[f"{stack}/{name}"] = props
    return found


def test_every_kit_function_logs_json_with_application_level_info(dev: Synthesized) -> None:
    functions = _kit_functions(dev)
    # inference, scoring, and the pipeline's steps
    assert len(functions) >= 4, sorted(functions)
    for name, props in functions.items():
        config = props.get("LoggingConfig")
        assert config, f"{name} has no LoggingConfig"
        assert config["LogFormat"] == "JSON", name
        # Never stricter: Lambda files a JSON line without "level" (the EMF line) as INFO.
        assert config["ApplicationLogLevel"] == "INFO", name
        # WARN where a line per request is paid for (serving); elsewhere the REPORT lines'
        # duration and memory cost nothing at a few calls per run and size the functions.
        expected = "WARN" if props["Handler"] == INFERENCE_HANDLER else "INFO"
        assert config["SystemLogLevel"] == expected, name
