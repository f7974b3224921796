"""What request handlers need, made once at start-up and held on app.state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from mochi_api.event_hub import EventHub
from mochi_api.job_reader import JobReader
from mochi_api.settings import ApiSettings
from mochi_common.storage import VideoStore
from mochi_common.supervise import Supervisor

if TYPE_CHECKING:  # api_keys imports Caller from here
    from mochi_api.api_keys import ApiKeys


@dataclass
class ApiContext:
    settings: ApiSettings
    nc: Client
    js: JetStreamContext
    reader: JobReader
    store: VideoStore
    hub: EventHub
    idempotency: KeyValue
    # The event hub's pump and every other long-lived task (/readyz asks it).
    tasks: Supervisor
    # Who may submit what (priorities per key).
    keys: ApiKeys


@dataclass(frozen=True)
class Caller:
    """Who is asking. Without API keys everyone is one anonymous owner."""

    owner: str
    admin: bool

    @property
    def owner_filter(self) -> str | None:
        return None if self.admin else self.owner
