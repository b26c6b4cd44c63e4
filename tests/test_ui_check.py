"""What ops see in the Web UI.

`make ui-check` drives a real headless Chromium (Debian's package) through the Temporal Web UI on
a stack of its own (devstack.py on free ports) with the example orders, and asserts in the pages
what ops must read (the list filtered by OrderStage, the waiting order's summary and current
details with its deadline and reminders, the order flagged in OpsAttention); here we check that
it passes and leaves its screenshots. A fresh stack shows no reminder yet (the first goes after
two days), so the current details following each reminder are checked on the time-skipping
server.
"""

from __future__ import annotations

import os
import smtplib
import struct
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle

from csp_core.calendar import business_time
from csp_core.orders.provisioning import OrderStatus
from sandbox.smtp_sink import free_port
from tests.support.stack import Stack, example
from tools.ui_stack import find_chromium
from workflows.order import LicenseOrderWorkflow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "ui_check.py"
# Settings that would pin the check's stack onto given ports: it picks free ones without them.
PORT_SETTINGS = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_UI_PORT",
    "PROVIDER_BASE_URL",
    "SMTP_PORT",
    "CODEC_SERVER_PORT",
    "METRICS_ADDRESS",
)
SCREENSHOTS = (
    "1-orders.png",
    "2-awaiting-acceptance.png",
    "3-waiting-order.png",
    "4-waiting-order-search-attributes.png",
    "5-ops-attention.png",
    "6-flagged-order.png",
)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    return struct.unpack(">II", data[16:24])


def check_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PORT_SETTINGS and k != "CHROMIUM"}
    return env | extra


@pytest.mark.ui
@pytest.mark.skipif(
    find_chromium() is None,
    reason="Debian's Chromium is not installed (apt-get install -y chromium; make ui-check "
    "installs it when run as root)",
)
def test_ui_check_passes_and_saves_every_screenshot(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        cwd=ROOT,
        env=check_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ABS-2026-000125 waits for acceptance until" in result.stdout
    assert "reminders sent: 0" in result.stdout  # the first reminder is days away
    for name in SCREENSHOTS:
        width, height = png_size(tmp_path / name)
        assert width == 2000 and height >= 900, f"{name}: {width}x{height}"  # the viewport
    assert not (tmp_path / "failure.png").exists()
    assert "local stack is up" in (tmp_path / "stack" / "devstack.log").read_text()


def test_without_chromium_it_names_the_package_to_install(tmp_path: Path) -> None:
    missing = tmp_path / "no-chromium"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        cwd=ROOT,
        env=check_env(CHROMIUM=str(missing)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"CHROMIUM={missing} is not an executable file" in result.stderr
    assert "apt-get install -y chromium" in result.stderr
    assert not list(tmp_path.glob("*.png"))


async def current_details(handle: WorkflowHandle) -> str:
    """What the Web UI shows as the workflow's current details."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


@pytest.mark.asyncio(loop_scope="session")
async def test_the_waiting_orders_details_count_each_reminder_and_keep_the_deadline(
    stack: Stack,
) -> None:
    handle = await stack.submit(example("order-link-invite.json"))
    await stack.env.sleep(timedelta(minutes=1))
    waiting: OrderStatus = await handle.query(LicenseOrderWorkflow.status)
    assert waiting.waiting_since is not None and waiting.acceptance_deadline is not None
    since, expires = waiting.waiting_since, f"Expires {business_time(waiting.acceptance_deadline)}."

    async def details_at(offset: timedelta) -> str:
        now = await stack.env.get_current_time()
        await stack.env.sleep(since + offset - now)
        return await current_details(handle)

    before = await details_at(timedelta(days=2) - timedelta(seconds=1))
    assert "**AWAITING_PARTNER_ACCEPTANCE**" in before
    assert "Reminders sent: 0." in before and expires in before
    after = await details_at(timedelta(days=2, minutes=1))
    assert "Reminders sent: 1." in after and expires in after
    third = await details_at(timedelta(days=10, minutes=1))
    assert "Reminders sent: 3." in third and expires in third

    await handle.signal(LicenseOrderWorkflow.cancel_order, "test over")
    await stack.result(handle)


def test_the_sink_make_run_starts_refuses_what_smtp_sink_refuse_names(tmp_path: Path) -> None:
    """How ui-check's stack gets an order flagged NOTICE_UNDELIVERABLE: its sink refuses the
    reseller's address for good, as a real mail server would."""
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "sandbox.smtp_sink", "--port", str(port), "--outbox", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "SMTP_SINK_REFUSE": "*@rechazado.mx, nadie@cliente.mx"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None and "listening" in sink.stdout.readline()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            refused = smtp.sendmail(
                "csp@test.example.mx",
                ["compras@rechazado.mx", "nadie@cliente.mx", "ventas@cloudbajio.mx"],
                "Subject: prueba\r\n\r\nhola\r\n",
            )
    finally:
        sink.terminate()
        sink.wait(15)
    assert {address: code for address, (code, _) in refused.items()} == {
        "compras@rechazado.mx": 550,
        "nadie@cliente.mx": 550,
    }
    assert len(list(tmp_path.glob("*.eml"))) == 1  # the accepted recipient got it
