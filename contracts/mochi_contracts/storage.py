"""Where a job's files live in any store: one stable key per job and file.

A job's video, its poster and its thumbnail clip lie side by side under
`videos/<first two hex digits>/<job id>.*`. One prefix for all three is what
keeps them expiring together: an S3 lifecycle rule on `videos/` (the one
retention sets) expires the thumbnails with no rule of their own, and a sweep
that walks `videos/` finds every file of an expired job, orphans included."""

from __future__ import annotations

VIDEO_CONTENT_TYPE = "video/mp4"
THUMBNAIL_CONTENT_TYPE = "image/jpeg"
THUMBNAIL_CLIP_CONTENT_TYPE = "video/mp4"
# Every key of a job's files starts so (retention rules and sweeps look only there).
VIDEO_PREFIX = "videos/"

_VIDEO_SUFFIX = ".mp4"
_THUMBNAIL_SUFFIX = ".poster.jpg"
_THUMBNAIL_CLIP_SUFFIX = ".clip.mp4"


def _job_dir(job_id: str) -> str:
    return f"{VIDEO_PREFIX}{job_id[:2]}/{job_id}"


def video_key(job_id: str) -> str:
    return _job_dir(job_id) + _VIDEO_SUFFIX


def thumbnail_key(job_id: str) -> str:
    """The poster: a JPEG of one representative frame."""
    return _job_dir(job_id) + _THUMBNAIL_SUFFIX


def thumbnail_clip_key(job_id: str) -> str:
    """A few muted seconds of the video, small, for a tile that plays on hover."""
    return _job_dir(job_id) + _THUMBNAIL_CLIP_SUFFIX


def job_keys(job_id: str) -> tuple[str, str, str]:
    """Every file a job may have in the store: deleted together."""
    return video_key(job_id), thumbnail_key(job_id), thumbnail_clip_key(job_id)


def job_of_key(key: str) -> str | None:
    """The job whose file `key` is, or None for a key no job's file has."""
    if not key.startswith(VIDEO_PREFIX):
        return None
    _, _, name = key.rpartition("/")
    job_id, dot, _ = name.partition(".")
    if not dot or not job_id or key not in job_keys(job_id):
        return None
    return job_id
