"""The real monitor in a process of its own, steered through stdin by the fault suite
(so it can be killed -9 and restarted like the real thing).

Each stdin line is a JSON request `{"id": n, "op": ...}`; each answer is a JSON line
`{"reply": n, ...}` on stdout, among the monitor's own JSON log lines. Ops: `view`,
`command` (target, active), `pending`.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
from typing import Any

from bus.logs import configure
from bus.settings import load_settings
from fireworks.cli import build, serve
from monitor.monitor import MonitorService


def answer(service: MonitorService, request: dict[str, Any]) -> dict[str, Any]:
    op = request["op"]
    if op == "view":
        return {"view": service.registry.view().model_dump(mode="json")}
    if op == "command":
        command = service.command(request["target"], request["active"])
        return {"command": str(command.command_id)}
    if op == "pending":
        return {"pending": [str(c.command_id) for c in service.registry.pending_commands()]}
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    settings = load_settings()
    configure(settings.log_level, "json")
    bus, service = build(settings, "monitor")
    assert isinstance(service, MonitorService)

    def reply(request: dict[str, Any]) -> None:
        try:
            body = answer(service, request)
        except Exception as error:
            body = {"error": repr(error)}
        print(json.dumps({"reply": request["id"], **body}), flush=True)

    def read_requests() -> None:
        for line in sys.stdin:
            bus.call_threadsafe(functools.partial(reply, json.loads(line)))

    threading.Thread(target=read_requests, daemon=True).start()
    return serve(bus, service, "monitor")


if __name__ == "__main__":
    sys.exit(main())
