"""Submit-time checks beyond the request's own bounds: the deadline (from the
body or the Cancel-After header) and where the webhook may go."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import msgspec

from mochi_api.settings import ApiSettings
from mochi_common.webhook_targets import refused_target
from mochi_contracts.jobs import FieldError, JobRequest

# Go-style durations as Replicate takes them ("90s", "5m", "1h30m") or bare seconds;
# ASCII digits only (`\d` takes any script's, and float() reads them).
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_AT_FIELD = re.compile(r"at `\$\.([A-Za-z_]+)")
# The longest a job may be told to wait for a runner (also bounds `deadline`).
MAX_WAIT_S = 30 * 86400.0


def parse_duration(text: str) -> float | None:
    text = text.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    if not text or _PART.sub("", text):
        return None
    return sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))


def strict_errors(body: bytes) -> list[FieldError]:
    """What Litestar's lax conversion let through: a number sent as a string
    ("64"), a string for a bool. The body is decoded again, strictly."""
    try:
        msgspec.json.decode(body, type=JobRequest)
    except msgspec.ValidationError as err:
        match = _AT_FIELD.search(str(err))
        return [FieldError(match.group(1) if match else "body", str(err).split(" - at ")[0])]
    return []


async def checked(data: JobRequest, cancel_after: str | None, settings: ApiSettings,
                  now: datetime) -> tuple[JobRequest, list[FieldError]]:
    errors: list[FieldError] = []
    deadline = data.deadline
    if cancel_after is not None:
        seconds = parse_duration(cancel_after)
        if seconds is None or not 0 < seconds <= MAX_WAIT_S:
            errors.append(FieldError("Cancel-After", "a duration such as 90s, 5m or 1h30m, at most 30 days"))
        else:
            header_deadline = now + timedelta(seconds=seconds)
            deadline = min(deadline, header_deadline) if deadline else header_deadline
    if deadline is not None and deadline <= now:
        errors.append(FieldError("deadline", f"must be in the future (now is {now.isoformat()})"))
    elif deadline is not None and (deadline - now).total_seconds() > MAX_WAIT_S:
        errors.append(FieldError("deadline", "at most 30 days from now"))
    if data.webhook_url is not None:
        reason = await refused_target(data.webhook_url, settings.webhook_allow_loopback,
                                      settings.webhook_allow_private)
        if reason is not None:
            errors.append(FieldError("webhook_url", f"refused: {reason}"))
    return msgspec.structs.replace(data, deadline=deadline), errors
