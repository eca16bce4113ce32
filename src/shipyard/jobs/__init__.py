"""Batch jobs: durable, retried, resumable batch prediction over files.

from shipyard import jobs
job = jobs.submit(jobs.JobRequest("iris-batch", inputs=["data/*.parquet"], output="out/"))
jobs.wait(job.id)
"""

from shipyard.jobs.request import JobRequest
from shipyard.jobs.sdk import delete, get, list_jobs, logs, retry, stop, submit, wait
from shipyard.jobs.service import run_scheduler
from shipyard.jobs.states import JobState
from shipyard.jobs.view import JobInfo

__all__ = [
    "JobInfo",
    "JobRequest",
    "JobState",
    "delete",
    "get",
    "list_jobs",
    "logs",
    "retry",
    "run_scheduler",
    "stop",
    "submit",
    "wait",
]
