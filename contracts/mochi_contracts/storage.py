"""Where a job's video lives in any store: one stable key per job."""

VIDEO_CONTENT_TYPE = "video/mp4"


def video_key(job_id: str) -> str:
    return f"videos/{job_id[:2]}/{job_id}.mp4"
