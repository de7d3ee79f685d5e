"""The full sync's work queue on Azure Storage queues: JSON messages, base64-encoded as the Functions host expects.

In Azure the queue-triggered function receives the messages and the host moves one that keeps failing to
`<queue>-poison`. Locally (`python -m sync full`) `drain` plays the host's part with the same rules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy
from pydantic import BaseModel

from sync.settings import Settings
from sync.state.jobs import Phase

MAX_DEQUEUE_COUNT = 5  # host.json extensions.queues.maxDequeueCount


class WorkMessage(BaseModel):
    """One unit of full-sync work: a page of one task of one job."""

    job: str
    entity: str
    phase: Phase
    page: int


@dataclass
class Delivery:
    message: WorkMessage
    dequeue_count: int


def _client(settings: Settings, name: str) -> QueueClient:
    policies: dict[str, Any] = {
        "message_encode_policy": TextBase64EncodePolicy(),
        "message_decode_policy": TextBase64DecodePolicy(),
    }
    connection = settings.state_connection
    if connection is not None:
        return QueueClient.from_connection_string(connection.get_secret_value(), name, **policies)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_webjobs_storage_client_id)
    account = settings.azure_webjobs_storage_account_name
    return QueueClient(f"https://{account}.queue.core.windows.net", name, credential=credential, **policies)


class WorkQueue:
    def __init__(self, queue: QueueClient, poison: QueueClient | None = None) -> None:
        self.queue = queue
        self.poison = poison
        for client in (queue, poison):
            if client is not None:
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkQueue:
        name = settings.sync_full_sync_queue
        return cls(_client(settings, name), _client(settings, f"{name}-poison"))

    def send(self, message: WorkMessage) -> None:
        self.queue.send_message(message.model_dump_json())

    def drain(
        self,
        handle: Callable[[Delivery], None],
        visibility_timeout: int = 30,
        idle_polls: int = 1,
        on_error: Callable[[Delivery, Exception], None] | None = None,
    ) -> int:
        """Process messages until the queue stays empty, as the host would: a message is deleted once handled, made
        visible again when handling raises, and moved to the poison queue after MAX_DEQUEUE_COUNT failed tries."""
        handled = 0
        empty = 0
        while empty < idle_polls:
            batch = list(self.queue.receive_messages(max_messages=8, visibility_timeout=visibility_timeout))
            if not batch:
                empty += 1
                continue
            empty = 0
            for raw in batch:
                delivery = Delivery(WorkMessage.model_validate_json(raw.content), raw.dequeue_count or 1)
                try:
                    handle(delivery)
                except Exception as exc:  # the host's rule: retry until the dequeue count runs out, then poison
                    if on_error is not None:
                        on_error(delivery, exc)
                    if delivery.dequeue_count >= MAX_DEQUEUE_COUNT:
                        if self.poison is not None:
                            self.poison.send_message(raw.content)
                        self.queue.delete_message(raw)
                    else:
                        self.queue.update_message(raw, visibility_timeout=0)
                    continue
                self.queue.delete_message(raw)
                handled += 1
        return handled

    def approximate_count(self) -> int:
        return int(self.queue.get_queue_properties().approximate_message_count or 0)
