"""The scoring function: three events from the scoring state machine (docs/CONTRACTS.md).

``{"step": "plan", "request": ScoringRequest}``, a Distributed Map child's ``{"Items": [Part,
...], "BatchInput": BatchInput}``, and ``{"step": "summarize", "plan": Plan, "request":
ScoringRequest}``. The steps are :mod:`.scoring`'s; this module parses, calls and serializes;
:mod:`.scoring_handler` builds it once per execution environment.
A malformed event or input raises :class:`~onnxkit.contract.scoring.ScoringError`, whose one
line is the Step Functions error's cause.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onnxkit.contract import layout
from onnxkit.contract import scoring as contract

from .scoring import Models, S3Store, Store, plan, score_parts, summarize


@dataclass
class ScoringFunction:
    """The scoring steps over one artifact bucket and one model name, built once per sandbox."""

    bucket: str
    model_name: str
    store: Store
    models: Models = field(default_factory=Models)
    part_bytes: int = contract.DEFAULT_PART_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str], client: Any = None) -> ScoringFunction:
        """From the function's environment (the CDK app sets both names)."""
        if client is None:
            import boto3  # noqa: PLC0415  # the Lambda runtime's; only the cloud builds one

            client = boto3.client("s3")
        return cls(
            env[layout.ARTIFACT_BUCKET_ENV],
            env[layout.MODEL_NAME_ENV],
            S3Store(client),
            part_bytes=int(env.get(layout.PART_BYTES_ENV) or contract.DEFAULT_PART_BYTES),
        )

    def lambda_handler(self, event: Any, context: Any) -> Any:
        """Lambda's signature."""
        del context
        return self.handle(event)

    def handle(self, event: Any) -> Any:
        """Route one event to its step."""
        if not isinstance(event, dict):
            raise contract.ScoringError(f"expected a JSON object event, got {type(event).__name__}")
        if "Items" in event:
            parts = contract.decode(event["Items"], list[contract.Part])
            batch_input = contract.decode(event.get("BatchInput"), contract.BatchInput)
            results = score_parts(parts, batch_input, store=self.store, models=self.models)
            # The map's ResultWriter keeps these; the part's own result object has the rest.
            return [
                {"part": r.part, "rows": r.rows, "scored": r.scored, "rejected": r.rejected}
                for r in results
            ]
        step = event.get("step")
        request = contract.decode(event.get("request"), contract.ScoringRequest)
        if step == "plan":
            return plan(
                request,
                bucket=self.bucket,
                model_name=self.model_name,
                store=self.store,
                part_bytes=self.part_bytes,
            ).to_dict()
        if step == "summarize":
            planned = contract.decode(event.get("plan"), contract.Plan)
            summary = summarize(planned, request, store=self.store)
            return {
                "summary_uri": f"{summary.output_uri}{contract.SUMMARY_FILE}",
                "rows": summary.rows,
                "scored": summary.scored,
                "rejected": summary.rejected,
                "failed_parts": len(summary.failed_parts),
                "complete": summary.complete,
                "model_version": summary.model.version,
            }
        raise contract.ScoringError(f"unknown scoring step {step!r}")
