"""The SQS queue that receives a bucket's S3 event notifications: long polls, deletes, and
the set-up a user may ask for (the queue, its policy, the bucket's notification
configuration).  Errors leave as :class:`~watchsync.core.errors.Failure` kinds, as every S3
error does (s3/failures.py).

The queue's URL says where it is: a queue on AWS (``https://sqs.REGION.amazonaws.com/...``)
is asked through its region's endpoint, any other (a local implementation) through the
URL's own host, so no endpoint needs configuring beside the S3 one.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import boto3
import botocore.session
from botocore.config import Config

from watchsync.core.errors import Failure, FailureKind
from watchsync.s3.failures import classify
from watchsync.s3.location import S3Settings, S3Url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: How long a received message stays hidden from other receivers while it is applied;
#: one not deleted by then (its path failing) is received again.
VISIBILITY = 300


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One received message: the handle that deletes it, and its body as sent."""

    receipt: str
    body: str


def queue_region(url: str) -> str | None:
    """The region of a queue on AWS, from its URL (None elsewhere).

    >>> queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/watchsync")
    'eu-west-1'
    >>> queue_region("http://127.0.0.1:5000/123456789012/watchsync") is None
    True
    """
    host = urllib.parse.urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs" and host.endswith((".amazonaws.com", ".com.cn")):
        return parts[1]
    return None


def _sqs_client(url: str, settings: S3Settings) -> Any:
    region = queue_region(url) or settings.region or "us-east-1"
    endpoint = None
    if queue_region(url) is None:
        split = urllib.parse.urlsplit(url)
        endpoint = f"{split.scheme}://{split.netloc}"
    session = boto3.session.Session(
        botocore_session=botocore.session.get_session(), profile_name=settings.profile
    )
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=settings.connect_timeout,
        # A long poll answers within its wait; the read timeout must outlast it.
        read_timeout=settings.read_timeout + 25,
    )
    return session.client("sqs", region_name=region, endpoint_url=endpoint, config=config)


class NotificationQueue:
    """Long polls and deletes on one queue (see the module's docstring for its endpoint).

    Built without a request; the client is made at the first one.
    """

    def __init__(self, url: str, *, settings: S3Settings, client: Any = None) -> None:
        self.url = url
        self._settings = settings
        self._client = client

    def _sqs(self) -> Any:
        if self._client is None:
            self._client = _sqs_client(self.url, self._settings)
        return self._client

    def receive(self, *, wait: float) -> list[QueueMessage]:
        """Up to 10 messages, waiting up to ``wait`` seconds (at most 20) for the first."""
        try:
            got = self._sqs().receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=max(0, min(20, round(wait))),
                VisibilityTimeout=VISIBILITY,
            )
        except Exception as exc:
            raise _failure(exc, f"cannot read queue {self.url}") from exc
        return [
            QueueMessage(str(m["ReceiptHandle"]), str(m.get("Body", "")))
            for m in got.get("Messages", ())
        ]

    def delete(self, receipts: list[str]) -> None:
        """Delete received messages (ten to a request); one already gone is no error."""
        for i in range(0, len(receipts), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": r} for n, r in enumerate(receipts[i : i + 10])
            ]
            try:
                self._sqs().delete_message_batch(QueueUrl=self.url, Entries=entries)
            except Exception as exc:
                raise _failure(exc, f"cannot delete messages from queue {self.url}") from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _failure(exc: Exception, what: str) -> Failure:
    failed = classify(exc)
    if failed.kind is FailureKind.LOCAL:
        return failed
    return Failure(failed.kind, failed.code, failed.text, message=f"{what}: {failed.text}")


def set_up_notifications(
    client: S3Client, where: S3Url, *, queue_name: str, settings: S3Settings, sqs: Any = None
) -> str:
    """Create (or find) the queue ``queue_name``, let the bucket send to it, and add a
    notification configuration that sends it the ObjectCreated and ObjectRemoved events
    under the prefix (the bucket's other configurations are kept); returns its URL."""
    region = settings.region or client.meta.region_name or "us-east-1"
    if sqs is None:
        endpoint = client.meta.endpoint_url
        on_aws = urllib.parse.urlsplit(endpoint).hostname or ""
        session = boto3.session.Session(
            botocore_session=botocore.session.get_session(), profile_name=settings.profile
        )
        sqs = session.client(
            "sqs",
            region_name=region,
            endpoint_url=None if on_aws.endswith(".amazonaws.com") else endpoint,
        )
    try:
        url = str(sqs.create_queue(QueueName=queue_name)["QueueUrl"])
        arn = str(
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
        )
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "watchsync-s3-events",
                    "Effect": "Allow",
                    "Principal": {"Service": "s3.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": arn,
                    "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{where.bucket}"}},
                }
            ],
        }
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
        current = client.get_bucket_notification_configuration(Bucket=where.bucket)
        config: dict[str, Any] = {k: v for k, v in current.items() if k != "ResponseMetadata" and v}
        ours = f"watchsync-{queue_name}"
        queues = [q for q in config.get("QueueConfigurations", []) if q.get("Id") != ours]
        rule: dict[str, Any] = {
            "Id": ours,
            "QueueArn": arn,
            "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
        }
        if where.prefix:
            rule["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": where.prefix}]}}
        config["QueueConfigurations"] = [*queues, rule]
        client.put_bucket_notification_configuration(
            Bucket=where.bucket, NotificationConfiguration=cast(Any, config)
        )
    except Exception as exc:
        raise _failure(exc, f"cannot set up notifications for {where.url()}") from exc
    return url
