"""Examples and error responses for the OpenAPI document at /schema.

Kept apart from the routes so a handler reads as what it does; each route
names the responses it can give from here."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from mochi_contracts.resources import Job, JobList, LogList

_ID = "3f2a9c0d4b1e4f7a8c6d5e4f3a2b1c0d"

SUBMIT_EXAMPLES = [
    Example(summary="Mochi-1 defaults (848x480, 163 frames, 64 steps)",
            value={"prompt": "A close-up of a red fox walking through fresh snow at dawn"}),
    Example(summary="A short, quick draft",
            value={"prompt": "Waves crashing on black volcanic rocks", "negative_prompt": "blurry",
                   "width": 640, "height": 368, "num_frames": 49, "num_inference_steps": 32,
                   "guidance_scale": 4.5, "seed": 42, "fps": 30}),
]

_REQUEST = {"prompt": "Waves crashing on black volcanic rocks", "negative_prompt": "", "width": 848,
            "height": 480, "num_frames": 163, "num_inference_steps": 64, "guidance_scale": 4.5,
            "seed": 42, "fps": 30}
_LINKS = {"self": f"/v1/jobs/{_ID}", "events": f"/v1/jobs/{_ID}/events",
          "video": f"/v1/jobs/{_ID}/video", "cancel": f"/v1/jobs/{_ID}/cancel", "logs": f"/v1/jobs/{_ID}/logs",
          "preview": f"/v1/jobs/{_ID}/preview", "thumbnail": f"/v1/jobs/{_ID}/thumbnail",
          "thumbnail_clip": f"/v1/jobs/{_ID}/thumbnail/clip"}


def _job(**over: Any) -> dict[str, Any]:
    job = {"id": _ID, "status": "queued", "final": False, "request": _REQUEST, "created_at": "2026-11-23T08:00:00Z",
           "started_at": None, "finished_at": None,
           "progress": {"step": 0, "total_steps": 64, "fraction": 0.0, "seconds_per_step": None,
                        "phase": "queued"},
           "queue_position": 2, "estimated_start_at": "2026-11-23T08:03:10Z", "estimated_finish_at": None,
           "attempts": 0, "attempt_starts": [], "runner": None, "cancel_requested": False, "error": None,
           "video": None,
           "expires_at": None, "metrics": {"queued_seconds": 12.4, "running_seconds": None,
                                           "seconds_per_step": None, "runner": None},
           "webhook": None, "links": _LINKS}
    job.update(over)
    return job


QUEUED = _job()
RUNNING = _job(status="running", started_at="2026-11-23T08:03:02Z", queue_position=None,
               estimated_start_at=None, attempts=2, runner="gpu-runner-7d9f-0",
               attempt_starts=[{"attempt": 1, "runner": "gpu-runner-2c41-0", "started_at": "2026-11-23T08:01:40Z",
                                "from_step": 0},
                               {"attempt": 2, "runner": "gpu-runner-7d9f-0", "started_at": "2026-11-23T08:03:02Z",
                                "from_step": 12}],
               progress={"step": 17, "total_steps": 64, "fraction": 0.2656, "seconds_per_step": 2.71,
                         "phase": "denoising"},
               estimated_finish_at="2026-11-23T08:06:05Z")
COMPLETED = _job(status="completed", final=True, started_at="2026-11-23T08:03:02Z", finished_at="2026-11-23T08:06:12Z",
                 queue_position=None, estimated_start_at=None, attempts=1, runner="gpu-runner-7d9f-0",
                 progress={"step": 64, "total_steps": 64, "fraction": 1.0, "seconds_per_step": None,
                           "phase": "finished"},
                 video={"key": f"videos/3f/{_ID}.mp4", "size_bytes": 4812731, "content_type": "video/mp4",
                        "width": 848, "height": 480, "num_frames": 163, "fps": 30},
                 expires_at="2026-11-30T08:06:12Z",
                 metrics={"queued_seconds": 182.0, "running_seconds": 190.0, "seconds_per_step": 2.71,
                          "runner": "gpu-runner-7d9f-0"},
                 webhook={"url": "https://example.com/hooks/mochi", "events": ["completed", "failed"],
                          "deliveries": [{"id": f"msg_{_ID}_412", "event_type": "completed",
                                          "status": "delivered", "attempts": 2,
                                          "last_attempt_at": "2026-11-23T08:06:19Z", "last_status_code": 200,
                                          "last_error": None, "next_attempt_at": None}]})


class Problem(msgspec.Struct):
    """application/problem+json (RFC 9457), with the fields at fault."""

    status: int
    title: str
    detail: str
    type: str | None = None
    errors: list[dict[str, str]] | None = None


def _problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> ResponseSpec:
    value = {"status": status, "type": f"https://mochi-serve.dev/problems/{kind}", "title": title,
             "detail": detail, **extra}
    return ResponseSpec(data_container=Problem, description=title, media_type="application/problem+json",
                        examples=[Example(summary=title, value=value)])


INVALID = _problem(422, "invalid-request", "The request has invalid fields",
                   "num_frames: must be 6k+1 (1, 7, 13, ..., 163); nearest below is 7",
                   errors=[{"field": "num_frames",
                            "message": "must be 6k+1 (1, 7, 13, ..., 163); nearest below is 7"}])
UNAUTHORIZED = _problem(401, "unauthorized", "API key required",
                        "send 'Authorization: Bearer <key>' with a key this deployment knows")
NOT_FOUND = _problem(404, "not-found", "Not found", f"no job {_ID}")
RATE_LIMITED = _problem(429, "rate-limited", "Too many requests",
                        "too many submissions for this key; retry after the given seconds")
FINISHED = _problem(409, "job-finished", "Job already finished", f"job {_ID} is completed")
NOT_READY = _problem(409, "video-not-ready", "No video yet",
                     f"job {_ID} is running; its video exists once it is completed")
GONE = _problem(410, "video-gone", "Video gone",
                f"the video of job {_ID} expired at 2026-11-30T08:06:12+00:00 and was deleted")
UNAVAILABLE = _problem(503, "unavailable", "Service unavailable",
                       "the job system is not reachable right now; retry shortly")


def job_response(description: str, *examples: tuple[str, dict[str, Any]]) -> ResponseSpec:
    return ResponseSpec(data_container=Job, description=description,
                        examples=[Example(summary=s, value=v) for s, v in examples])


LIST_RESPONSE = ResponseSpec(
    data_container=JobList, description="A page of jobs, newest first",
    examples=[Example(summary="Two jobs and a cursor", value={"jobs": [RUNNING, QUEUED], "next_cursor": "czQy"})])

SUBMIT_RESPONSES = {202: job_response("Queued", ("Queued", QUEUED)), 401: UNAUTHORIZED, 422: INVALID,
                    429: RATE_LIMITED, 503: UNAVAILABLE}
GET_RESPONSES = {200: job_response("The job", ("Queued", QUEUED), ("Running", RUNNING),
                                   ("Completed", COMPLETED)), 401: UNAUTHORIZED, 404: NOT_FOUND,
                 503: UNAVAILABLE}
LIST_RESPONSES = {200: LIST_RESPONSE, 401: UNAUTHORIZED, 422: INVALID, 503: UNAVAILABLE}
VIDEO_RESPONSES = {
    200: ResponseSpec(data_container=bytes, media_type="video/mp4", description="The MP4 (206 for a Range)"),
    307: ResponseSpec(data_container=None, description="Redirect to a presigned URL of the object store"),
    401: UNAUTHORIZED, 404: NOT_FOUND, 409: NOT_READY, 410: GONE}
LOGS_RESPONSES = {
    200: ResponseSpec(data_container=LogList, description="The job's log lines, oldest first", examples=[
        Example(summary="A job's lines", value={"logs": [
            {"seq": 41, "time": "2026-11-23T08:03:02Z", "level": "info", "runner": "gpu-runner-7d9f-0",
             "message": "started on gpu-runner-7d9f-0 (attempt 1); model resident and warm on cuda:0"}]})]),
    401: UNAUTHORIZED, 404: NOT_FOUND, 503: UNAVAILABLE}
CANCEL_RESPONSES = {202: job_response("Cancel requested", ("A queued job, cancelled at once", {
    **QUEUED, "status": "cancelled", "final": True, "cancel_requested": True, "queue_position": None,
    "estimated_start_at": None, "error": "cancelled while queued"})),
    401: UNAUTHORIZED, 404: NOT_FOUND, 409: FINISHED}
EVENTS_RESPONSES = {
    200: ResponseSpec(data_container=str, media_type="text/event-stream", description=(
        "id: 17\nevent: progress\ndata: {\"type\":\"progress\",\"job_id\":\"" + _ID + "\",\"time\":"
        "\"2026-11-23T08:03:48Z\",\"schema_version\":1,\"step\":17,\"total_steps\":64,\"runner\":\"r0\"}")),
    401: UNAUTHORIZED, 404: NOT_FOUND}
