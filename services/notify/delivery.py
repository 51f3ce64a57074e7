"""The delivery worker: sends planned notices over webhook, email (SMTP) and SMS (an HTTP gateway).

Each run claims the deliveries whose time has come, sends them concurrently (each with its own
timeout, so a slow or failing endpoint holds up nobody else), then records each outcome with its
NotificationDelivered / NotificationAttemptFailed / NotificationFailed event in one transaction. A
failed attempt is retried later (`next_attempt_at`, exponential backoff with jitter; an SMS not inside
the recipient's quiet hours), never by sleeping in the worker.

On the wire this is at-least-once: after a crash between a send and its commit, the delivery is sent
again. Webhook and SMS requests carry the delivery id (`X-ProposalFlow-Delivery`) so the receiver
can drop the repeat; the database never records a delivery as sent twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notify import domain, store
from services.notify.rules import Channel
from services.notify.service import SYSTEM, outcome_event_id
from services.notify.settings import NotifySettings
from services.notify.unit_of_work import SERVICE
from shared.events import Event, NotificationAttemptFailed, NotificationDelivered, NotificationFailed
from shared.outbox import add_to_outbox

log = logging.getLogger("proposalflow.notify.delivery")

DELIVERY_HEADER = "X-ProposalFlow-Delivery"
TIMESTAMP_HEADER = "X-ProposalFlow-Timestamp"
SIGNATURE_HEADER = "X-ProposalFlow-Signature"


class SendError(Exception):
    """A send that did not reach its recipient; `permanent` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def _http_outcome(response: httpx.Response) -> None:
    """2xx is delivered; 408, 429 and 5xx are worth retrying; any other 4xx will not get better."""
    if response.is_success:
        return
    status = response.status_code
    permanent = 400 <= status < 500 and status not in (408, 429)
    raise SendError(f"HTTP {status} from the endpoint", permanent=permanent)


class DeliveryWorker:
    """Claims due deliveries, sends them, records the outcomes."""

    def __init__(self, engine: AsyncEngine, settings: NotifySettings, after_commit: Callable[[], None]) -> None:
        self.engine = engine
        self.settings = settings
        self.after_commit = after_commit

    async def run_once(self) -> None:
        """One run of the periodic job."""
        await self.send_due()

    async def send_due(self) -> int:
        """Send every delivery that is due now; the number attempted."""
        attempted = 0
        while True:
            now = datetime.now(UTC)
            lease = now + timedelta(seconds=self.settings.delivery_timeout_s * 2 + 30)
            async with self.engine.begin() as conn:
                claimed = await store.claim_due(conn, now, lease, self.settings.delivery_batch_size)
            if not claimed:
                return attempted
            async with httpx.AsyncClient(timeout=self.settings.delivery_timeout_s) as client:
                errors = await asyncio.gather(*(self._attempt(client, row) for row in claimed))
            for row, error in zip(claimed, errors, strict=True):
                await self._record(row, error)
            self.after_commit()
            attempted += len(claimed)
            if len(claimed) < self.settings.delivery_batch_size:
                return attempted

    async def _attempt(self, client: httpx.AsyncClient, row: dict[str, Any]) -> SendError | None:
        channel = Channel(row["channel"])
        senders: dict[Channel, Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[None]]] = {
            Channel.WEBHOOK: self._send_webhook,
            Channel.EMAIL: self._send_email,
            Channel.SMS: self._send_sms,
        }
        try:
            await asyncio.wait_for(senders[channel](client, row), timeout=self.settings.delivery_timeout_s)
        except SendError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - whatever breaks one send is that delivery's outcome, not the run's
            error = SendError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        else:
            return None
        log.warning(
            "delivery %s to %s on %s failed (attempt %d): %s",
            row["id"],
            domain.masked_address(channel, row["address"]),
            channel.value,
            row["attempts"] + 1,
            error,
        )
        return error

    def _signed_request(self, row: dict[str, Any], payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            DELIVERY_HEADER: row["id"],
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: domain.webhook_signature(self.settings.webhook_secret, timestamp, body),
        }
        return body, headers

    async def _send_webhook(self, client: httpx.AsyncClient, row: dict[str, Any]) -> None:
        payload = {
            "id": row["id"],
            "recipient": row["recipient"],
            "proposal_id": row["proposal_id"],
            "title": row["title"],
            "body": row["body"],
            "link": row["link"],
            "cause_event_id": row["cause_event_id"],
            "cause_event_type": row["cause_event_type"],
        }
        body, headers = self._signed_request(row, payload)
        _http_outcome(await client.post(row["address"], content=body, headers=headers))

    async def _send_sms(self, client: httpx.AsyncClient, row: dict[str, Any]) -> None:
        if not self.settings.sms_gateway_url:
            raise SendError("no SMS gateway is configured (PROPOSALFLOW_NOTIFY_SMS_GATEWAY_URL)", permanent=True)
        body, headers = self._signed_request(row, {"id": row["id"], "to": row["address"], "text": row["body"]})
        _http_outcome(await client.post(self.settings.sms_gateway_url, content=body, headers=headers))

    async def _send_email(self, _client: httpx.AsyncClient, row: dict[str, Any]) -> None:
        if not self.settings.smtp_host:
            raise SendError("no SMTP server is configured (PROPOSALFLOW_NOTIFY_SMTP_HOST)", permanent=True)
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = row["address"]
        message["Subject"] = row["title"]
        message[DELIVERY_HEADER] = row["id"]
        message.set_content(row["body"])
        try:
            await aiosmtplib.send(
                message,
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                start_tls=self.settings.smtp_starttls,
                username=self.settings.smtp_username,
                password=self.settings.smtp_password,
                timeout=self.settings.delivery_timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise SendError("the mail server refused the recipient", permanent=True) from exc

    async def _record(self, row: dict[str, Any], error: SendError | None) -> None:
        now = datetime.now(UTC)
        attempts = row["attempts"] + 1
        common = {
            "proposal_id": row["proposal_id"],
            "actor": SYSTEM,
            "correlation_id": row["correlation_id"],
            "notification_id": row["id"],
            "recipient": row["recipient"],
            "channel": row["channel"],
            "cause_event_id": row["cause_event_id"],
            "cause_event_type": row["cause_event_type"],
            "attempts": attempts,
        }
        outcome: tuple[Event, str]
        async with self.engine.begin() as conn:
            if error is None:
                values: dict[str, Any] = {"status": store.DELIVERED, "attempts": attempts, "finished_at": now}
                outcome = (NotificationDelivered(**common), outcome_event_id(row["id"], "delivered"))
            else:
                retry_at = None if error.permanent else await self._retry_at(conn, row, now, attempts)
                values = {"attempts": attempts, "last_error": str(error)}
                if retry_at is None:
                    values.update(status=store.FAILED, finished_at=now)
                    outcome = (NotificationFailed(**common, error=str(error)), outcome_event_id(row["id"], "failed"))
                else:
                    values["next_attempt_at"] = retry_at
                    outcome = (
                        NotificationAttemptFailed(**common, error=str(error), retry_at=retry_at),
                        outcome_event_id(row["id"], f"attempt-{attempts}-failed"),
                    )
            if await store.finish_attempt(conn, row["id"], values):
                await add_to_outbox(conn, store.metadata, SERVICE, [outcome])

    async def _retry_at(
        self, conn: AsyncConnection, row: dict[str, Any], now: datetime, attempts: int
    ) -> datetime | None:
        """When to try again, or None when the last attempt has been spent. A retried SMS keeps the
        recipient's quiet hours (短信免打扰) as the first send did: it waits until they end."""
        retry_at = domain.next_attempt_at(
            now,
            attempts,
            max_attempts=self.settings.delivery_max_attempts,
            base_delay=self.settings.delivery_base_delay_s,
            max_delay=self.settings.delivery_max_delay_s,
        )
        if retry_at is None or row["channel"] != Channel.SMS.value:
            return retry_at
        contact = (await store.contacts_by_id(conn, [row["recipient"]])).get(row["recipient"])
        quiet_hours = contact.quiet_hours if contact else None
        return domain.sms_not_before(retry_at, quiet_hours, self.settings.timezone)
