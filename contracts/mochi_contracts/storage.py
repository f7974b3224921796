"""Where a job's video lives in any store: one stable key per job."""

VIDEO_CONTENT_TYPE = "video/mp4"
# Every video's key starts so (retention rules and sweeps look only there).
VIDEO_PREFIX = "videos/"


def video_key(job_id: str) -> str:
    return f"{VIDEO_PREFIX}{job_id[:2]}/{job_id}.mp4"
