"""Who is acting: the operating-system account that runs this process, as `login@host`.

Shipyard has no user accounts. The actor the audit log records, the registrant and every approver are
the OS account (looked up from the process's user id, not from $USER or $LOGNAME, which anyone can
set). A name given with `--user` is recorded beside it as the person acted for, never instead of it.
Programs that embed the registry choose the identity in their composition root (`Registry(...,
identity=...)`); a daemon would pass the caller it authenticated.
"""

from __future__ import annotations

import os
import socket

MAX_IDENTITY = 128
"""The longest identity the store keeps (its actor and registrant columns)."""


def os_identity() -> str:
    """`login@host`, the host name shortened when the whole would not fit MAX_IDENTITY (a long FQDN)."""
    login, host = os_login(), socket.gethostname() or "localhost"
    return f"{login}@{host}"[:MAX_IDENTITY]


def os_login() -> str:
    """The account name of the effective user id; `uid-N` when the system has no name for it."""
    try:
        import pwd  # POSIX only
    except ImportError:  # Windows: the logon name is what the OS reports
        import getpass

        return getpass.getuser()
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container user with no passwd entry
        return f"uid-{uid}"


def same_person(first: str, second: str) -> bool:
    """Whether two recorded identities are one account: equal `login@host`, or equal logins when either
    was recorded without a host (by an older Shipyard)."""
    login_a, _, host_a = first.partition("@")
    login_b, _, host_b = second.partition("@")
    if host_a and host_b:
        return first == second
    return login_a == login_b
