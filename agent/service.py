"""The systemd unit for ``hostprof agent``: least capabilities, read-only system.

Capabilities, and why each is needed:

* ``CAP_SYS_PTRACE``: read other processes' memory (the Python sampling core uses
  ``process_vm_readv``) and their ``/proc/PID/{maps,exe,root}``;
* ``CAP_BPF`` + ``CAP_PERFMON``: load eBPF programs and open perf events (cpu, offcpu,
  syscalls, gc collectors);
* ``CAP_SYS_RESOURCE``: raise ``RLIMIT_MEMLOCK`` for BPF maps on older kernels;
* ``CAP_DAC_READ_SEARCH``: read target binaries and ``/proc`` entries of other users, for
  symbols.

Everything else is denied: ``CapabilityBoundingSet`` is exactly that list,
``ProtectSystem=strict`` makes the file system read-only except the state and runtime folders
systemd creates for the agent, and ``NoNewPrivileges`` stops escalation.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from typing import List
from typing import Optional

from hostprof._errors import StorageError

UNIT_NAME = "hostprof-agent.service"
DEFAULT_UNIT_DIR = "/etc/systemd/system"
CAPABILITIES = (
    "CAP_SYS_PTRACE",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYS_RESOURCE",
    "CAP_DAC_READ_SEARCH",
)


def unit_text(executable: str, config_path: str) -> str:
    """The unit file's text for a ``hostprof`` executable and a config path."""
    caps = " ".join(CAPABILITIES)
    exec_start = f"{shlex.quote(executable)} agent run --config {shlex.quote(config_path)}"
    return f"""\
# Written by 'hostprof agent install'; remove with 'hostprof agent install --uninstall'.
[Unit]
Description=hostprof continuous profiling agent
Documentation=https://github.com/hostprof/hostprof/blob/main/docs/agent.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
KillSignal=SIGTERM
TimeoutStopSec=10
Restart=on-failure
RestartSec=5
# Least privilege: root's uid for /proc access, but only these capabilities.
CapabilityBoundingSet={caps}
AmbientCapabilities={caps}
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
# Writable: the spool (/var/lib/hostprof) and the status socket (/run/hostprof).
StateDirectory=hostprof
RuntimeDirectory=hostprof
LimitMEMLOCK=infinity
Nice=5

[Install]
WantedBy=multi-user.target
"""


def hostprof_executable() -> str:
    """The absolute path of the running ``hostprof`` entry point."""
    candidates: List[Optional[str]] = [
        os.path.join(os.path.dirname(sys.executable), "hostprof"),
        shutil.which("hostprof"),
    ]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return os.path.abspath(c)
    return f"{sys.executable} -m hostprof"


def install(
    unit_dir: str, config_path: str, executable: Optional[str] = None, reload_systemd: bool = True
) -> str:
    """Writes the unit file atomically; returns its path.

    Raises:
        StorageError: the folder is not writable.
    """
    path = os.path.join(unit_dir, UNIT_NAME)
    text = unit_text(executable or hostprof_executable(), config_path)
    try:
        os.makedirs(unit_dir, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(
            f"cannot write {path}: {exc.strerror}", "run as root, or pass --unit-dir"
        ) from None
    if reload_systemd:
        _systemctl("daemon-reload")
    return path


def uninstall(unit_dir: str, reload_systemd: bool = True) -> Optional[str]:
    """Removes the unit file; returns its path, or None when there was none."""
    path = os.path.join(unit_dir, UNIT_NAME)
    if not os.path.exists(path):
        return None
    if reload_systemd:
        _systemctl("disable", "--now", UNIT_NAME)
    try:
        os.unlink(path)
    except OSError as exc:
        raise StorageError(f"cannot remove {path}: {exc.strerror}", "run as root") from None
    if reload_systemd:
        _systemctl("daemon-reload")
    return path


def _systemctl(*args: str) -> None:
    exe = shutil.which("systemctl")
    if exe and os.path.isdir("/run/systemd/system"):
        subprocess.run(
            [exe, *args],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
