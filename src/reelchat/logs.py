"""Log lines for the server and its worker processes: text (the default) or JSON lines.

`--log-format json` (REELCHAT_LOG_FORMAT=json) writes one JSON object per line: `ts`, `level`,
`logger`, `process`, `message`, the `task_id` of any line about a task, and the fields a line adds
(`extra=`), e.g. a task's `event`, `status` and phase durations. A line is about a task when it runs
inside that task's run (`task_context`, a context variable that `asyncio.to_thread` carries into the
engine's thread) or names one (`task_…` in its text).

Also silenced here: transformers' "`CLIPImageProcessor` requires torchvision (not installed)" warning.
The Wan image-to-video pipelines load a CLIP image processor; without torchvision, transformers uses
its PIL implementation, which gives the same pixels, and says so on every start. reelchat does not
depend on torchvision (it would pin another torch build), so the warning is noise.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from .ids import TASK_ID_PATTERN

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(worker)s: %(message)s"

_current_task: contextvars.ContextVar[str | None] = contextvars.ContextVar("reelchat_task", default=None)
_TASK_IN_TEXT = re.compile(TASK_ID_PATTERN)
# attributes every LogRecord has: whatever else a record carries came from `extra=`
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "worker"}


@contextmanager
def task_context(task_id: str) -> Iterator[None]:
    """Lines logged inside this block (and threads it starts through asyncio) are about `task_id`."""
    token = _current_task.set(task_id)
    try:
        yield
    finally:
        _current_task.reset(token)


class TaskIdFilter(logging.Filter):
    """Gives each record `task_id` (from the running task, or a `task_…` its text names) and `worker`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_id", None) is None:
            task_id = _current_task.get()
            if task_id is None:
                found = _TASK_IN_TEXT.search(record.getMessage())
                task_id = found.group(0) if found else None
            record.task_id = task_id
        if not hasattr(record, "worker"):
            name = record.processName
            record.worker = f"[{name}]" if name != "MainProcess" else ""
        return True


class TorchvisionNoise(logging.Filter):
    """Drops transformers' warning that it uses the PIL image processor without torchvision."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in record.getMessage()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                line[key] = value if isinstance(value, str | int | float | bool | list | dict) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(fmt: LogFormat, level: int) -> None:
    """The root logger (uvicorn's loggers propagate to it in JSON mode) and the third-party noise."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TaskIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    silence_third_party(json_lines=fmt == "json")


def silence_third_party(*, json_lines: bool) -> None:
    """transformers logs through its own handler: filter its torchvision warning there. In JSON mode,
    the libraries' progress bars (which would break the one-object-per-line output) are turned off."""
    logging.getLogger("transformers.utils.import_utils").addFilter(TorchvisionNoise())
    if json_lines:
        import os

        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")


def uvicorn_log_config(fmt: LogFormat) -> dict[str, Any]:
    """What `uvicorn.run(log_config=…)` gets: its own in text mode; in JSON mode its loggers hand
    their lines to ours (the root logger's JSON handler)."""
    if fmt == "json":
        return {
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {
                "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
                "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
                "uvicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
            },
        }
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG
