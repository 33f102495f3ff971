"""Structured logs: one JSON object per line on stderr, from the ``bastion.gateway`` loggers."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.orjson import OrjsonFormatter

_HANDLER_NAME = "bastion-gateway-json"


def configure_json_logs(level: int = logging.INFO) -> None:
    """Send ``bastion.gateway`` records to stderr as JSON (``time``, ``level``, ``logger``, ``message`` and
    the record's ``extra`` fields). Calling it again does not add a second handler."""
    logger = logging.getLogger("bastion.gateway")
    logger.setLevel(level)
    if any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(OrjsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                                         rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    logger.addHandler(handler)
    logger.propagate = False
