"""Owner tokens and process liveness: who is working on a run or a trial (a leaf module).

An owner token is ``host:pid:random``. A token's process may be alive unless it is on this
host and its pid no longer exists; a token on another host can only be judged by how fresh
its heartbeat is (``owner_gone`` takes both into account). The run store's claims, the
status it shows and the tuner's trial ownership all go by these functions.
"""

from __future__ import annotations

import os
import secrets
import socket
import time


def new_owner() -> str:
    """A fresh owner token for this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def same_process(token: str) -> bool:
    """Whether ``token`` was made by this very process (any invocation in it)."""
    host, _, rest = token.partition(":")
    return host == socket.gethostname() and rest.partition(":")[0] == str(os.getpid())


def process_alive(token: str) -> bool:
    """Whether the process of owner token ``host:pid:token`` may be alive (always, when it is
    on another host: only its heartbeat can tell)."""
    host, _, rest = token.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or os.name == "nt":
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def owner_gone(token: str | None, heartbeat: float | None, stale_s: float,
               now: float | None = None) -> bool:
    """Whether nobody holds a claim any more: no owner; an owner on this host whose process
    has ended; or an owner on another host whose heartbeat is older than ``stale_s`` seconds
    (or missing). An owner on this host whose process lives holds its claim however old
    its heartbeat (a long step between two writes is not an exit)."""
    if token is None:
        return True
    if token.partition(":")[0] == socket.gethostname():
        return not process_alive(token)
    now = time.time() if now is None else now
    return heartbeat is None or now - heartbeat >= stale_s
