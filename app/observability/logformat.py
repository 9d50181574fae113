"""Log lines that show what the code logs: the event name, then its `extra` fields as key=value.

The code logs events with structured fields (`log.info("rebuild.stage", extra={"stage": "load",
"seconds": 0.8})`); the standard formatter prints the event name alone and drops the fields.
"""

from __future__ import annotations

import logging

# uvicorn repeats its message with colours in `color_message`
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime",
                                                                                    "color_message"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        if not fields:
            return line
        head, newline, trace = line.partition("\n")  # a traceback stays below its line
        return f"{head} {fields}{newline}{trace}"
