"""Running the real CLI (`python starter.py`) against a test stack, as ops run it.

As an asyncio subprocess: the stack's worker lives in the test's event loop and must keep
serving while the CLI waits for its answer (a blocking subprocess.run would stall it).
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.stack import Stack

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def stack_env(stack: Stack) -> dict[str, str]:
    """The stack's Temporal, task queue and registry; nothing else from this environment."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEMPORAL_", "DATABASE_", "SECRETS_", "TASK_QUEUE"))
    }
    env.update(
        TEMPORAL_ADDRESS=stack.env.client.service_client.config.target_host,
        TASK_QUEUE=stack.task_queue,
        DATABASE_URL=f"sqlite:///{stack.registry_path}",
        NO_COLOR="1",
        PYTHONIOENCODING="utf-8",
        COLUMNS="200",
    )
    return env


async def csp(env: dict[str, str], *args: str) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "starter.py",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]
