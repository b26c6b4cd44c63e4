"""`make ui-check`: the Temporal Web UI, checked in a real browser (Debian's Chromium, headless).

It brings up a local stack of its own (devstack.py, data in .data/ui-check/stack/, wiped first;
each port from TEMPORAL_ADDRESS, TEMPORAL_UI_PORT, PROVIDER_BASE_URL, SMTP_PORT,
CODEC_SERVER_PORT, METRICS_ADDRESS when set, a free port otherwise, so it never meets a
`make run`), or with --running uses the stack `make run` serves (its settings, TEMPORAL_UI_PORT
or 8233). It submits the example orders with the CLI, waits until the link-invite order waits
for the client's partner acceptance and the others are ACTIVE, then goes through the Web UI as
ops would and saves into .data/ui-check/ (--out):

  1-orders.png                       every order, with the stage, domain, reseller, reminder
                                     count, acceptance deadline and OpsAttention columns
  2-awaiting-acceptance.png          the list filtered by OrderStage="AWAITING_PARTNER_ACCEPTANCE"
  3-waiting-order.png                the waiting order: its summary and current details
  4-waiting-order-search-attributes.png  its search attributes (deadline, reminder count)

Each page is checked for what ops must read there, against the workflow's own state (the
deadline and reminders its status query reports). Exit 0 when all of it is there; 1 when
something is missing (the message says what; failure.png shows the page), 2 when Chromium is
missing (--install-chromium installs Debian's package when run as root), 130 on Ctrl-C.

    .venv/bin/python tools/ui_check.py [--running] [--out DIR] [--install-chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from csp_core.calendar import business_time  # noqa: E402
from csp_core.orders.models import order_workflow_id  # noqa: E402
from csp_core.orders.provisioning import OrderStatus  # noqa: E402
from csp_core.settings import get_settings  # noqa: E402
from csp_core.stages import OrderStage  # noqa: E402
from csp_core.timezones import BUSINESS_TZ  # noqa: E402
from sandbox.smtp_sink import free_port  # noqa: E402

EXAMPLES = sorted((ROOT / "examples").glob("order-*.json"))
WAITING_EXAMPLE = ROOT / "examples" / "order-link-invite.json"  # fabrikam: waits for the client
CHROMIUM_APT = "apt-get install -y chromium"
# The list columns ops add (Configure Columns): the order's search attributes.
ORDER_COLUMNS = [
    "OrderStage",
    "CustomerDomain",
    "ReminderCount",
    "AcceptanceDeadline",
    "OpsAttention",
]
BIN = Path(sys.executable).parent


class CheckFailed(Exception):
    """What ops would not see, or what kept the check from getting there."""


# ---------------------------------------------------------------------------------------------
# Chromium: Debian's package, never a browser build of Playwright's own.


def find_chromium() -> Path | None:
    """$CHROMIUM when set (and only it: an explicit choice is never replaced), else `chromium`
    on PATH or Debian's /usr/bin/chromium."""
    explicit = os.environ.get("CHROMIUM")
    candidates = [explicit] if explicit else [shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def ensure_chromium(install: bool) -> Path:
    """Debian's Chromium; with `install` and as root, apt-get installs it when missing."""
    if (found := find_chromium()) is not None:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"Chromium is missing: {CHROMIUM_APT}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(CHROMIUM_APT.split(), env=env).returncode != 0:
            # A machine whose package lists are stale or empty: refresh them once.
            subprocess.run(["apt-get", "update"], env=env, check=False)
            subprocess.run(CHROMIUM_APT.split(), env=env, check=False)
        if (found := find_chromium()) is not None:
            return found
    where = (
        f"CHROMIUM={os.environ['CHROMIUM']} is not an executable file"
        if os.environ.get("CHROMIUM")
        else "no `chromium` on PATH nor /usr/bin/chromium"
    )
    raise SystemExit(
        f"ui-check: Chromium not found ({where}). Install Debian's package: sudo {CHROMIUM_APT}"
    )


# ---------------------------------------------------------------------------------------------
# The stack: its own devstack.py, or the running `make run`.


@dataclass
class Target:
    """Where the stack answers: the environment its clients (the CLI, ours) need, and the UI."""

    env: dict[str, str]
    cwd: Path  # the CLI runs here (its registry is .data/csp.db of this folder)
    ui_url: str


def own_stack_environment(folder: Path) -> dict[str, str]:
    """Each port from the environment when set, a free one otherwise; data under `folder`."""

    def port(name: str) -> str:
        return os.environ.get(name) or str(free_port())

    metrics = os.environ.get("METRICS_ADDRESS") or f"127.0.0.1:{free_port()}"
    return {
        "TEMPORAL_ADDRESS": os.environ.get("TEMPORAL_ADDRESS") or f"127.0.0.1:{free_port()}",
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_UI_PORT": port("TEMPORAL_UI_PORT"),
        "PROVIDER": "sandbox",
        "PROVIDER_BASE_URL": os.environ.get("PROVIDER_BASE_URL")
        or f"http://127.0.0.1:{free_port()}",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port("SMTP_PORT"),
        "CODEC_SERVER_PORT": port("CODEC_SERVER_PORT"),
        "METRICS_ADDRESS": metrics,
        # Plain JSON: the UI shows payloads without a codec server.
        "PAYLOAD_ENCRYPTION_KEYS": "",
        "DATABASE_URL": f"sqlite:///{folder / '.data' / 'csp.db'}",
        "SECRETS_KEY_FILE": str(folder / ".data" / "secrets.key"),
        "SANDBOX_PROVISIONING_DELAY": "1",
        "WORKERS": "1",
    }


@contextmanager
def own_stack(folder: Path, timeout: float = 120.0) -> Iterator[Target]:
    """devstack.py in `folder` (wiped first), until it prints its banner; stopped on leaving
    (SIGINT: it stops its services in order; any it left behind are killed by pid)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = own_stack_environment(folder)
    log_path = folder / "devstack.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "devstack.py")],
            cwd=folder,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    children: dict[int, bytes] = {}
    try:
        deadline = time.monotonic() + timeout
        while "local stack is up" not in log_path.read_text(errors="replace"):
            if process.poll() is not None:
                raise CheckFailed(f"the stack exited at start:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise CheckFailed(f"no stack after {timeout:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.3)
        children = _children(process.pid)
        print(f"stack up (log {log_path})", flush=True)
        yield Target(env, folder, f"http://localhost:{env['TEMPORAL_UI_PORT']}")
    finally:
        children |= _children(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid, cmdline in children.items():  # still the process we saw: left behind
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                continue


def running_stack() -> Target:
    """The stack `make run` serves from this directory, found through the settings its
    clients read (environment, .env); the Web UI on TEMPORAL_UI_PORT (8233)."""
    ui_port = os.environ.get("TEMPORAL_UI_PORT", "8233")
    return Target({}, Path.cwd(), f"http://localhost:{ui_port}")


def _children(pid: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
    return found


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]


# ---------------------------------------------------------------------------------------------
# The orders: the examples, submitted as a user would, until one waits and the others are done.


@dataclass
class Orders:
    waiting: OrderStatus  # the link-invite order, waiting for the client's acceptance
    deadline: datetime  # its acceptance deadline
    stages: dict[str, str]  # workflow id -> OrderStage, as the list (visibility) shows it


def example_order_id(path: Path) -> str:
    return json.loads(path.read_text())["order_id"]


def submit_examples(target: Target) -> None:
    result = subprocess.run(
        [str(BIN / "csp"), "order", "submit", *map(str, EXAMPLES)],
        cwd=target.cwd,
        env={**os.environ, **target.env},
        capture_output=True,
        text=True,
    )
    print(result.stdout.rstrip(), flush=True)
    if result.returncode != 0:
        raise CheckFailed(f"csp order submit exited {result.returncode}: {result.stderr.strip()}")


async def settle_orders(patience: float) -> Orders:
    """Until the list shows the waiting order as AWAITING_PARTNER_ACCEPTANCE and every other
    example order at a final stage; then the waiting order's own status (deadline, reminders)."""
    from api.orders import order_status
    from temporalutil import search_attributes as sa
    from temporalutil.client import connect

    client = await connect(get_settings())
    waiting_id = example_order_id(WAITING_EXAMPLE)
    waiting = order_workflow_id(waiting_id)
    ids = {order_workflow_id(example_order_id(path)) for path in EXAMPLES}
    query = "WorkflowId IN ({})".format(", ".join(f'"{i}"' for i in sorted(ids)))
    give_up_at = time.monotonic() + patience
    while True:
        stages = {
            execution.id: execution.typed_search_attributes.get(sa.ORDER_STAGE) or "?"
            async for execution in client.list_workflows(query)
        }
        final = {wid for wid, stage in stages.items() if _is_final(stage)}
        if waiting in final:
            raise CheckFailed(
                f"order {waiting_id} is {stages[waiting]}: it no longer waits for acceptance "
                "on this stack (run ui-check on a stack of its own, without --running)"
            )
        if stages.get(waiting) == OrderStage.AWAITING_PARTNER_ACCEPTANCE and final == ids - {
            waiting
        }:
            break
        if time.monotonic() > give_up_at:
            raise CheckFailed(f"the example orders did not settle in {patience:.0f} s: {stages}")
        await asyncio.sleep(0.5)
    status = await order_status(client, waiting_id)
    if status.acceptance_deadline is None:
        raise CheckFailed(f"order {waiting_id} waits without a deadline: {status}")
    return Orders(status, status.acceptance_deadline, stages)


def _is_final(stage: str) -> bool:
    return stage in OrderStage.__members__ and OrderStage(stage).is_final


# ---------------------------------------------------------------------------------------------
# The Web UI, as ops go through it.


def list_url(ui_url: str, namespace: str, query: str) -> str:
    return f"{ui_url}/namespaces/{namespace}/workflows?query={urllib.parse.quote(query)}"


def expected_details(orders: Orders) -> list[str]:
    """What the waiting order's current details must tell ops, from the workflow's own state."""
    return [
        OrderStage.AWAITING_PARTNER_ACCEPTANCE.value,
        f"order {orders.waiting.order_id}",
        orders.waiting.domain,
        f"Reminders sent: {orders.waiting.reminders_sent}",
        f"Expires {business_time(orders.deadline)}",
    ]


def browse(chromium: Path, ui_url: str, namespace: str, orders: Orders, out: Path) -> list[Path]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Page, expect, sync_playwright

    from api.orders import summary
    from csp_core.orders.models import parse_order

    expect.set_options(timeout=30_000)  # the UI loads lazily; nothing here waits a fixed time
    status = orders.waiting
    waiting = order_workflow_id(status.order_id)
    awaiting = OrderStage.AWAITING_PARTNER_ACCEPTANCE.value
    saved: list[Path] = []

    def link(page: Page, workflow_id: str):  # noqa: ANN202 - a Playwright Locator
        return page.get_by_role("link", name=workflow_id, exact=True)

    def row(page: Page, workflow_id: str):  # noqa: ANN202
        return page.get_by_role("row").filter(has=link(page, workflow_id))

    def shot(page: Page, name: str) -> None:
        path = out / name
        page.screenshot(path=path, full_page=True)
        saved.append(path)
        print(f"  saved {path}", flush=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium))
        context = browser.new_context(
            viewport={"width": 2000, "height": 900},
            locale="en-US",
            timezone_id=BUSINESS_TZ.key,  # the UI's "local" time is Mexico City, as for ops
        )
        page = context.new_page()
        try:
            # 1. Every order, with the order's search attributes added as columns.
            page.goto(list_url(ui_url, namespace, 'WorkflowType="LicenseOrderWorkflow"'))
            for workflow_id in orders.stages:
                expect(link(page, workflow_id)).to_be_visible()
            page.get_by_role("button", name="Collapse Navigation").click()  # room for columns
            page.get_by_role("button", name="Configure Columns").click()
            for column in ORDER_COLUMNS:
                page.get_by_role("button", name=f"Add {column} column").click()
            for column in ("Run ID", "Type", "End"):  # room for the order's columns
                page.get_by_role("button", name=f"Remove {column} column").click()
            page.get_by_role("button", name="Close Workflows Table configuration").click()
            expect(page.get_by_text("Configure Workflows Table")).to_be_hidden()
            for column in ORDER_COLUMNS:  # in the screenshot, not scrolled off to the right
                expect(page.get_by_role("columnheader", name=column)).to_be_in_viewport(ratio=1)
            for workflow_id, stage in orders.stages.items():
                expect(row(page, workflow_id)).to_contain_text(stage)
            deadline = orders.deadline.astimezone(BUSINESS_TZ)
            for text in (status.domain, f"{deadline:%b} {deadline.day}, {deadline.year}"):
                expect(row(page, waiting)).to_contain_text(text)
            shot(page, "1-orders.png")

            # 2. The list filtered by stage: only the order that waits for its client.
            page.goto(list_url(ui_url, namespace, f'OrderStage="{awaiting}"'))
            expect(page.get_by_text(f'OrderStage = "{awaiting}"')).to_be_visible()
            expect(link(page, waiting)).to_be_visible()
            for workflow_id in orders.stages:
                if workflow_id != waiting:
                    expect(link(page, workflow_id)).to_have_count(0)
            shot(page, "2-awaiting-acceptance.png")

            # 3. The waiting order's page: summary and current details (deadline, reminders).
            link(page, waiting).click()
            page.get_by_role("tab", name="User Metadata").click()
            order = parse_order(WAITING_EXAMPLE.read_bytes(), ["MX"])
            summary_frame = page.frame_locator("#user-metadata-summary").locator("body")
            expect(summary_frame).to_contain_text(summary(order))
            details_frame = page.frame_locator("#user-metadata-current-details").locator("body")
            for text in expected_details(orders):
                expect(details_frame).to_contain_text(text)
            shot(page, "3-waiting-order.png")

            # 4. Its search attributes: what the list columns and queries read.
            page.get_by_role("tab", name="Search Attributes").click()
            attributes = page.get_by_role("textbox", name="Search Attributes")
            expect(attributes).to_contain_text(f'"OrderStage": "{awaiting}"')
            expect(attributes).to_contain_text(f'"ReminderCount": {status.reminders_sent}')
            expect(attributes).to_contain_text('"AcceptanceDeadline"')
            shot(page, "4-waiting-order-search-attributes.png")
        except (AssertionError, PlaywrightError) as err:
            page.screenshot(path=out / "failure.png", full_page=True)
            raise CheckFailed(f"{err}\n(the page as it was: {out / 'failure.png'})") from err
        finally:
            browser.close()
    return saved


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ui_check.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--running",
        action="store_true",
        help="use the stack `make run` serves instead of starting one",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / ".data" / "ui-check",
        help="where the screenshots go (default .data/ui-check/)",
    )
    parser.add_argument(
        "--install-chromium",
        action="store_true",
        help=f"when Chromium is missing and this runs as root: {CHROMIUM_APT}",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds for the example orders to settle",
    )
    return parser.parse_args(argv)


@contextmanager
def terminated_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        chromium = ensure_chromium(args.install_chromium)
    except SystemExit as missing:
        print(missing, file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # no screenshot of an earlier run is taken for this one's
        old.unlink()
    print(f"ui-check: Chromium {chromium}; screenshots into {out}", flush=True)
    with terminated_as_interrupt():
        try:
            stack = nullcontext(running_stack()) if args.running else own_stack(out / "stack")
            with stack as target:
                os.environ.update(target.env)  # our own clients read the same settings
                get_settings.cache_clear()
                submit_examples(target)
                orders = asyncio.run(settle_orders(args.timeout))
                print(
                    f"{orders.waiting.order_id} waits for acceptance until "
                    f"{business_time(orders.deadline)}"
                    f", reminders sent: {orders.waiting.reminders_sent}; Web UI {target.ui_url}",
                    flush=True,
                )
                saved = browse(
                    chromium, target.ui_url, get_settings().temporal_namespace, orders, out
                )
        except CheckFailed as err:
            print(f"ui-check FAILED: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("ui-check interrupted", file=sys.stderr)
            return 130
    print(f"ui-check passed: {len(saved)} screenshots in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
