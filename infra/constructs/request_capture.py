"""Request capture: the inference function's capture lines, from its log group to the artifact
bucket's ``capture/YYYY/MM/DD/HH/`` as gzip-compressed JSON Lines of capture records.

The function writes each sampled row as one JSON line on stdout (functions/inference/capture.py)
before its call returns; Lambda sends stdout to the function's log group. A subscription filter
picks the capture lines (:data:`~onnxkit.contract.layout.CAPTURE_LOG_FILTER_PATTERN`) and sends
them to a Firehose stream, which decompresses CloudWatch Logs' batches, keeps only each log
event's message (the line as printed), ends every batch with a newline and writes gzip objects
under the UTC hour of arrival. Records Firehose cannot process or deliver go to
``capture-errors/``, never among the records. Why this transport and what it costs:
docs/deploy.md ("Request capture").

Everything is encrypted with the kit's key: the stream's buffer (server-side encryption) and
the objects (SSE-KMS). The two roles may do only this: CloudWatch Logs may put records into this
one stream; Firehose may write objects under the two prefixes, use the key through S3 only, and
log its delivery errors to its own log group.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.artifact_store import Artifacts
from infra.constructs.lambda_common import retention
from infra.nag import allow
from onnxkit.config import OnnxKitConfig
from onnxkit.contract import layout

# Firehose's timestamp namespace is the arrival time of the oldest record in the object, in UTC
# ("Custom prefixes for Amazon S3 objects", docs.aws.amazon.com/firehose/latest/dev/s3-prefixes
# .html): the layout's capture/YYYY/MM/DD/HH/.
CAPTURE_S3_PREFIX = f"{layout.CLOUD_CAPTURE_PREFIX}!{{timestamp:yyyy/MM/dd/HH}}/"
CAPTURE_ERRORS_S3_PREFIX = (
    f"{layout.CAPTURE_ERRORS_PREFIX}!{{firehose:error-output-type}}/!{{timestamp:yyyy/MM/dd/HH}}/"
)
# Applied before compression: ~30,000 one-row records of the demo model, a few MB once gzipped,
# which the drift check reads whole.
BUFFER_MB = 16


class RequestCapture(Construct):
    """The subscription filter, the Firehose stream and their roles for one log group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: OnnxKitConfig,
        artifacts: Artifacts,
        log_group: logs.ILogGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        key = artifacts.key
        bucket_arn = artifacts.arn(self)

        errors = logs.LogGroup(
            self,
            "DeliveryErrors",
            retention=retention(config),
            removal_policy=RemovalPolicy.RETAIN if config.retained else RemovalPolicy.DESTROY,
        )
        errors_stream = logs.LogStream(self, "DeliveryErrorStream", log_group=errors)

        # Firehose's role, as "Grant Firehose access to an Amazon S3 destination" lists it
        # (docs.aws.amazon.com/firehose/latest/dev/controlling-access.html), narrowed to the
        # capture prefixes; the external id keeps other accounts' streams from assuming it.
        delivery_role = iam.Role(
            self,
            "DeliveryRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com",
                conditions={"StringEquals": {"sts:ExternalId": stack.account}},
            ),
            description=f"onnxkit {config.env}: Firehose writes captured requests to S3",
        )
        allow(
            delivery_role,
            ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            [bucket_arn],
        )
        allow(
            delivery_role,
            ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            [
                artifacts.arn(self, layout.CLOUD_CAPTURE_PREFIX),
                artifacts.arn(self, layout.CAPTURE_ERRORS_PREFIX),
            ],
            reason="Firehose names the objects it writes under the capture prefixes (an hour "
            "folder and a unique name per object).",
        )
        allow(
            delivery_role,
            ["kms:Decrypt", "kms:GenerateDataKey"],
            [key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
        )
        allow(
            delivery_role, ["logs:PutLogEvents"], [errors_stream_arn(stack, errors, errors_stream)]
        )
        delivery_policy = delivery_role.node.find_child("DefaultPolicy")

        self.stream = firehose.CfnDeliveryStream(
            self,
            "Stream",
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="CUSTOMER_MANAGED_CMK", key_arn=key.key_arn
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=bucket_arn,
                role_arn=delivery_role.role_arn,
                prefix=CAPTURE_S3_PREFIX,
                error_output_prefix=CAPTURE_ERRORS_S3_PREFIX,
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=config.capture.buffer_seconds, size_in_m_bs=BUFFER_MB
                ),
                compression_format="GZIP",
                encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                    kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(
                        awskms_key_arn=key.key_arn
                    )
                ),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        _processor("Decompression", CompressionFormat="GZIP"),
                        # Only each log event's message: the line the function printed
                        # (docs.aws.amazon.com/firehose/latest/dev/Message_extraction.html).
                        _processor("CloudWatchLogProcessing", DataMessageExtraction="true"),
                        # A newline after every batch, so an object's last record is a complete
                        # line (a reader skips an unterminated last line as still being written).
                        _processor("AppendDelimiterToRecord"),
                    ],
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=errors.log_group_name,
                    log_stream_name=errors_stream.log_stream_name,
                ),
            ),
        )
        self.stream.node.add_dependency(delivery_policy)

        # CloudWatch Logs' role: put records into this stream only, assumed for this account's
        # log groups only ("Subscription filters with Amazon Data Firehose",
        # docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html).
        logs_role = iam.Role(
            self,
            "SubscriptionRole",
            assumed_by=iam.ServicePrincipal(
                "logs.amazonaws.com",
                conditions={
                    "StringLike": {
                        "aws:SourceArn": f"arn:{stack.partition}:logs:{stack.region}:"
                        f"{stack.account}:*"
                    }
                },
            ),
            description=f"onnxkit {config.env}: CloudWatch Logs sends capture lines to Firehose",
        )
        allow(logs_role, ["firehose:PutRecord", "firehose:PutRecordBatch"], [self.stream.attr_arn])
        self.subscription = logs.CfnSubscriptionFilter(
            self,
            "Subscription",
            log_group_name=log_group.log_group_name,
            filter_name="onnxkit-capture",
            filter_pattern=layout.CAPTURE_LOG_FILTER_PATTERN,
            destination_arn=self.stream.attr_arn,
            role_arn=logs_role.role_arn,
        )
        # CloudWatch Logs tries the destination when the filter is created.
        self.subscription.node.add_dependency(logs_role.node.find_child("DefaultPolicy"))

        # Records wait in Firehose for up to 24 hours and are lost after that ("Handle data
        # delivery failures", docs.aws.amazon.com/firehose/latest/dev/retry.html): an hour's
        # backlog is the time to look.
        self.freshness_alarm = cloudwatch.Alarm(
            self,
            "DeliveryFreshness",
            metric=cloudwatch.Metric(
                namespace="AWS/Firehose",
                metric_name="DeliveryToS3.DataFreshness",
                dimensions_map={"DeliveryStreamName": self.stream.ref},
                statistic="Maximum",
                period=Duration.minutes(5),
            ),
            threshold=3600,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"onnxkit {config.env}: captured records waiting in Firehose for "
            "an hour or more (they are dropped after 24 hours)",
        )


def errors_stream_arn(stack: Stack, group: logs.LogGroup, stream: logs.LogStream) -> str:
    """The ARN of one log stream (CloudFormation returns none for a stream)."""
    return (
        f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:"
        f"{group.log_group_name}:log-stream:{stream.log_stream_name}"
    )


def _processor(kind: str, **parameters: str) -> firehose.CfnDeliveryStream.ProcessorProperty:
    return firehose.CfnDeliveryStream.ProcessorProperty(
        type=kind,
        parameters=[
            firehose.CfnDeliveryStream.ProcessorParameterProperty(
                parameter_name=name, parameter_value=value
            )
            for name, value in parameters.items()
        ]
        or None,
    )
