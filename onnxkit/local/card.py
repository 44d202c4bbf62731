"""A model card from a model's own records: the manifest, its reference statistics, the quality
gate's record of a promoted version (evaluation.json: production's metrics when it was gated),
and the intended-use text of the config.

:func:`build_card` gathers the card as JSON-ready data (``onnxkit card --json``);
:func:`render_markdown` writes it as a Markdown document a user can paste. Nothing here
measures anything: every number is one the training job recorded.
"""

from __future__ import annotations

from typing import Any

from onnxkit.contract.card import EvaluationRecord
from onnxkit.contract.layout import EVALUATION_FILE, REFERENCE_FILE
from onnxkit.contract.manifest import Manifest
from onnxkit.contract.metrics import HIGHER_IS_BETTER
from onnxkit.contract.reference import CategoricalStats, ClassPredictions, Reference

TOP_FEATURES = 10  # the Markdown card's importance table; --json has every feature


def build_card(
    manifest: Manifest,
    reference: Reference | None,
    *,
    intended_use: str,
    limitations: str,
    evaluation: EvaluationRecord | None = None,
) -> dict[str, Any]:
    """The card's content, JSON-ready; ``evaluation`` is the quality gate's record of a
    promoted version (what production was when it was gated)."""
    served = manifest.serving.variant
    return {
        "model": {
            "name": manifest.model_name,
            "version": manifest.model_version,
            "created_at": manifest.created_at.isoformat(),
            "task": manifest.task,
            "estimator": manifest.estimator,
            "target": manifest.signature.target,
            "features": len(manifest.signature.features),
            "classes": manifest.classes,
            "serving": {"file": manifest.serving.file, "variant": served},
            "schema_version": manifest.schema_version,
            "library_versions": manifest.library_versions,
            "hyperparameters": manifest.hyperparameters,
        },
        "intended_use": intended_use,
        "limitations": limitations,
        "data": manifest.data.to_dict(),
        "metrics": _metrics(manifest, evaluation),
        "gate": evaluation.to_dict() if evaluation else None,
        "quantization": _quantization(manifest),
        "importance": manifest.importance.to_dict() if manifest.importance else None,
        "drift_reference": _drift_reference(manifest, reference),
    }


def _lift(served: dict[str, float], other: dict[str, float]) -> dict[str, float]:
    """``served`` minus ``other`` per shared metric, signed so that positive is better."""
    lift = {}
    for name, value in other.items():
        if name in served:
            delta = served[name] - value
            # + 0.0: no "-0.0000" when the two are equal.
            lift[name] = (delta if name in HIGHER_IS_BETTER else -delta) + 0.0
    return lift


def _metrics(manifest: Manifest, evaluation: EvaluationRecord | None) -> dict[str, Any]:
    """Every variant's held-out metrics, the baseline's and production's at the gate, and the
    served variant's lift over each (signed so that positive is better, whatever the metric's
    direction)."""
    served = manifest.serving_metrics
    baseline = manifest.baseline
    production = evaluation.production if evaluation else None
    return {
        "primary": manifest.primary_metric,
        "served_variant": manifest.serving.variant,
        "variants": {name: report.metrics for name, report in manifest.variants.items()},
        "baseline": baseline.to_dict() if baseline else None,
        "lift_over_baseline": _lift(served, baseline.metrics) if baseline else {},
        "production_at_gate": (
            {"model_version": production.model_version, "metrics": production.metrics}
            if production
            else None
        ),
        "lift_over_production": _lift(served, production.metrics) if production else {},
    }


def _quantization(manifest: Manifest) -> dict[str, Any]:
    """The quantization decision and what each ONNX variant measured against scikit-learn."""
    q = manifest.quantization
    variants = {}
    for name, report in manifest.variants.items():
        if name == "sklearn":
            continue
        variants[name] = {
            "size_bytes": report.size_bytes,
            "parity": report.parity.to_dict() if report.parity else None,
            "row_independence_passed": (
                report.row_independence.passed if report.row_independence else None
            ),
            "single_row_latency_us": report.single_row_latency_us,
        }
    return {
        "decision": q.decision,
        "method": q.method,
        "reason": q.reason,
        "tolerance": q.tolerance,
        "quantized_operators": q.quantized_operators,
        "variants": variants,
    }


def _drift_reference(manifest: Manifest, reference: Reference | None) -> dict[str, Any] | None:
    """What ``onnxkit drift`` compares against: per feature its kind, rows and missing rows,
    and the held-out predictions; None when the model has no reference statistics."""
    listed = manifest.files.get(REFERENCE_FILE)
    if reference is None or listed is None:
        return None
    features = []
    for stats in reference.features:
        entry: dict[str, Any] = {
            "name": stats.name,
            "kind": "categorical" if isinstance(stats, CategoricalStats) else "numeric",
            "rows": stats.rows,
            "missing": stats.missing,
        }
        if isinstance(stats, CategoricalStats):
            entry["distinct"] = stats.distinct
        else:
            entry["bins"] = len(stats.counts)
        features.append(entry)
    predictions = reference.predictions
    return {
        "file": REFERENCE_FILE,
        "sha256": listed.sha256,
        "features": features,
        "predictions": {
            "kind": "classes" if isinstance(predictions, ClassPredictions) else "values",
            "rows": predictions.rows,
        },
    }


# --------------------------------------------------------------------------- Markdown


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _size(size: int | None) -> str:
    return "-" if size is None else f"{size / 1024:.1f} KiB"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    # A "|" in a feature or class name would split its cell.
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    return [cells(header), "|" + "---|" * len(header), *(cells(r) for r in rows)]


def render_markdown(card: dict[str, Any]) -> str:
    """The card as a Markdown document."""
    model = card["model"]
    lines = [
        f"# Model card: {model['name']} {model['version']}",
        "",
        f"A {model['task']} model ({model['estimator']}) predicting `{model['target']}` from "
        f"{model['features']} features, trained {model['created_at']}; it serves "
        f"`{model['serving']['file']}` ({model['serving']['variant']}).",
        "",
    ]
    if model["classes"]:
        lines += [f"Classes: {', '.join(f'`{c}`' for c in model['classes'])}.", ""]
    lines += [
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Limitations",
        "",
        card["limitations"],
        "",
    ]
    lines += _data_section(card["data"])
    lines += _metrics_section(card["metrics"])
    lines += _gate_section(card["gate"])
    lines += _quantization_section(card["quantization"])
    lines += _importance_section(card["importance"])
    lines += _drift_section(card["drift_reference"])
    versions = ", ".join(f"{k} {v}" for k, v in model["library_versions"].items())
    lines += ["## Provenance", "", f"Manifest schema {model['schema_version']}; {versions}.", ""]
    return "\n".join(lines)


def _data_section(data: dict[str, Any]) -> list[str]:
    source = "a validation channel" if data["validation_source"] == "channel" else "a seeded split"
    lines = [
        "## Training data",
        "",
        f"{data['rows']} rows, {data['columns']} columns: {data['train_rows']} trained on, "
        f"{data['validation_rows']} held out ({source}). Combined sha256 `{data['sha256']}`.",
        "",
        *_table(["file", "sha256"], [[name, f"`{d}`"] for name, d in data["files"].items()]),
        "",
    ]
    if data["warnings"]:
        lines += ["What training noticed in the data:", ""]
        lines += [f"- {w}" for w in data["warnings"]]
        lines.append("")
    return lines


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _metrics_section(metrics: dict[str, Any]) -> list[str]:
    variants: dict[str, dict[str, float]] = metrics["variants"]
    baseline = metrics["baseline"]
    production = metrics.get("production_at_gate")
    names = list(dict.fromkeys(n for m in variants.values() for n in m))
    header = ["metric"]
    if baseline:
        header.append(f"baseline ({baseline['strategy']})")
    if production:
        header.append(f"production {production['model_version']} (at gate)")
    header += [f"{v} (served)" if v == metrics["served_variant"] else v for v in variants]
    header.append("lift over baseline")
    if production:
        header.append("lift over production")
    rows = []
    for name in names:
        row = [f"**{name}**" if name == metrics["primary"] else name]
        if baseline:
            row.append(_number(baseline["metrics"].get(name)))
        if production:
            row.append(_number(production["metrics"].get(name)))
        row += [_number(m.get(name)) for m in variants.values()]
        row.append(_signed(metrics["lift_over_baseline"].get(name)))
        if production:
            row.append(_signed(metrics["lift_over_production"].get(name)))
        rows.append(row)
    lines = ["## Metrics on the held-out rows", "", *_table(header, rows), ""]
    note = f"Primary metric: {metrics['primary']}. Lift is signed so that positive is better."
    if not baseline:
        note += " This model was trained before the naive baseline was measured."
    if production:
        note += (
            f" Production's metrics are those of {production['model_version']} on its own "
            "held-out rows, as the quality gate read them from its manifest."
        )
    return [*lines, note, ""]


def _gate_section(gate: dict[str, Any] | None) -> list[str]:
    lines = ["## Quality gate", ""]
    if gate is None:
        return [
            *lines,
            "Not recorded: this version has not been promoted, or was promoted before "
            f"onnxkit kept the gate's record ({EVALUATION_FILE} beside the manifest).",
            "",
        ]
    production = gate["production"]
    verdict = "passed" if gate["passed"] else "failed"
    when = f" on {gate['evaluated_at']}" if gate.get("evaluated_at") else ""
    metric = gate.get("gate_metric")
    if production is None:
        against = "nothing was in production (the first promotion)"
    else:
        against = f"production was {production['model_version']}"
        if metric and metric in production["metrics"] and metric in gate["candidate"]["metrics"]:
            against += (
                f" ({metric} {production['metrics'][metric]:.4f} against this version's "
                f"{gate['candidate']['metrics'][metric]:.4f})"
            )
    lines.append(f"The quality gate {verdict}{when}; {against}.")
    lines.append("")
    if gate["reasons"]:
        lines += [f"- {reason}" for reason in gate["reasons"]]
        lines.append("")
    return lines


def _quantization_section(q: dict[str, Any]) -> list[str]:
    rows = []
    for name, v in q["variants"].items():
        parity = v["parity"] or {}
        independent = v["row_independence_passed"]
        rows.append(
            [
                f"{name} (served)" if name == q["decision"] else name,
                _size(v["size_bytes"]),
                _number(parity.get("label_agreement")),
                _number(parity.get("max_abs_diff")),
                _number(parity.get("rows")),
                "-" if independent is None else ("passed" if independent else "failed"),
            ]
        )
    tolerance = ", ".join(f"{k} {v:g}" for k, v in q["tolerance"].items()) or "none"
    return [
        "## Parity and quantization",
        "",
        f"Serves **{q['decision']}** (method {q['method']}): {q['reason']}. "
        f"Tolerance: {tolerance}.",
        "",
        *_table(
            [
                "variant",
                "size",
                "label agreement",
                "max abs diff",
                "parity rows",
                "row independence",
            ],
            rows,
        ),
        "",
    ]


def _importance_section(importance: dict[str, Any] | None) -> list[str]:
    lines = ["## Global feature importance", ""]
    if importance is None:
        return [
            *lines,
            "Not recorded: this model was trained before onnxkit measured permutation "
            "importance; train it again to get it.",
            "",
        ]
    ranked = sorted(importance["features"], key=lambda f: -f["mean"])
    shown = ranked[:TOP_FEATURES]
    lines += [
        "Permutation importance of the scikit-learn Pipeline on "
        f"{importance['rows']} of {importance['held_out_rows']} held-out rows, "
        f"{importance['repeats']} repeats (seed {importance['random_state']}): "
        f"the drop in {importance['metric']} when a feature's values are shuffled. Near zero "
        "or negative: the model does not rely on it.",
        "",
        *_table(
            ["rank", "feature", f"{importance['metric']} drop", "std"],
            [
                [str(i), f["name"], f"{f['mean']:.4f}", f"{f['std']:.4f}"]
                for i, f in enumerate(shown, 1)
            ],
        ),
        "",
    ]
    if len(ranked) > len(shown):
        lines += [f"{len(ranked) - len(shown)} more features in `onnxkit card --json`.", ""]
    return lines


def _drift_section(reference: dict[str, Any] | None) -> list[str]:
    lines = ["## Drift references", ""]
    if reference is None:
        return [
            *lines,
            f"None: this model has no {REFERENCE_FILE} (it was trained before onnxkit recorded "
            "one), so `onnxkit drift` cannot check it; train it again to get them.",
            "",
        ]
    features = reference["features"]
    numeric = sum(1 for f in features if f["kind"] == "numeric")
    predictions = reference["predictions"]
    rows = [
        [
            f["name"],
            f["kind"],
            str(f["rows"]),
            f"{f['missing'] / f['rows']:.1%}" if f["rows"] else "-",
            f"{f['bins']} bins" if f["kind"] == "numeric" else f"{f['distinct']} categories",
        ]
        for f in features
    ]
    return [
        *lines,
        f"`{reference['file']}` (sha256 `{reference['sha256']}`) holds the training "
        f"distribution of {len(features)} features ({numeric} numeric, "
        f"{len(features) - numeric} categorical) and the served graph's "
        f"{predictions['kind']} on {predictions['rows']} held-out rows; `onnxkit drift` "
        "compares captured requests with it.",
        "",
        *_table(["feature", "kind", "training rows", "missing", "reference"], rows),
        "",
    ]
