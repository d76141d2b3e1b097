"""Owner tokens and process liveness: who is working on a run or a trial (a leaf module).

An owner token is ``host:pid:random``. A token's process may be alive unless it is on this
host and its pid no longer exists; a token on another host can only be judged by how fresh
its heartbeat is (the caller's business). The run store's claims and the tuner's trial
ownership both go by these two functions.
"""

from __future__ import annotations

import os
import secrets
import socket


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
