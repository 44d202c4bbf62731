"""What the kit's Lambda functions share: runtime, architecture, log retention, role."""

from __future__ import annotations

from typing import Any, Literal

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge, allow
from onnxkit.config import OnnxKitConfig

PYTHON_VERSION = "3.14"
RUNTIME = lambda_.Runtime.PYTHON_3_14


_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1827: "FIVE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip


def retention(config: OnnxKitConfig) -> logs.RetentionDays:
    """The config's log retention as CDK's enum (config validated the number)."""
    return logs.RetentionDays[_RETENTION[config.log_retention_days]]


def architecture(config: OnnxKitConfig) -> lambda_.Architecture:
    """The config's Lambda architecture."""
    return (
        lambda_.Architecture.ARM_64
        if config.function.architecture == "arm64"
        else (lambda_.Architecture.X86_64)
    )


def log_options(system_level: Literal["DEBUG", "INFO", "WARN"] = "INFO") -> dict[str, Any]:
    """``lambda.Function`` keyword arguments for Lambda's advanced logging controls: the JSON
    log format, the given level for Lambda's own (system) lines, INFO for the code's.

    JSON because log-level filtering needs it ("Configuring advanced logging controls for
    Lambda functions", docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-
    advanced.html). It changes neither line the kit's code prints: Lambda "doesn't double-encode
    any logs that are already JSON encoded" ("Configuring JSON and plain text log formats",
    .../monitoring-cloudwatchlogs-logformat.html), and the Python runtime formats only records
    of the root logger (Powertools' Logger and Metrics write to stdout themselves).

    The application level stays INFO, never WARN or above: Lambda files a stdout JSON line
    without a valid "level" (and RFC 3339 "timestamp") as INFO ("Log-level filtering",
    .../monitoring-cloudwatchlogs-log-level.html), and the Powertools EMF line carries neither,
    so a stricter level would drop every custom metric, and with it the runtime's own
    uncaught-error line (whose key is "log_level", not "level").
    """
    return {
        "logging_format": lambda_.LoggingFormat.JSON,
        "system_log_level_v2": lambda_.SystemLogLevel[system_level],
        "application_log_level_v2": lambda_.ApplicationLogLevel.INFO,
    }


def function_role(scope: Construct, construct_id: str, log_group: logs.ILogGroup) -> iam.Role:
    """A Lambda role that may write only to its own log group (no managed policy)."""
    role = iam.Role(scope, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    allow(
        role,
        ["logs:CreateLogStream", "logs:PutLogEvents"],
        [log_group.log_group_arn, f"{log_group.log_group_arn}:log-stream:*"],
        reason="Lambda names the log streams it creates inside the function's own log group.",
    )
    return role


def acknowledge_function_role(role: iam.Role) -> None:
    """X-Ray tracing (added by the Function construct) needs Resource ``*``."""
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "X-Ray PutTraceSegments/PutTelemetryRecords accept no resource other than *.",
    )
