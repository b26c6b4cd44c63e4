"""`make ui-check`: the Temporal Web UI, checked in a real browser (Debian's Chromium, headless,
driven by Playwright).

It brings up a local stack of its own (tools/ui_stack.py: devstack.py, data in
.data/ui-check/stack/, ports from the usual settings when set, free ones otherwise), or with
--running uses the stack `make run` serves. It submits the example orders with the CLI and, on
its own stack, one more order whose reseller's mail server refuses our e-mails (the SMTP sink
refuses *@rechazado.mx); waits until the link-invite order waits for the client's partner
acceptance and the others are done; then goes through the Web UI as ops would and saves into
.data/ui-check/ (--out):

  1-orders.png                       every order, with the stage, domain, reminder count,
                                     acceptance deadline and OpsAttention columns
  2-awaiting-acceptance.png          the list filtered by OrderStage="AWAITING_PARTNER_ACCEPTANCE"
  3-waiting-order.png                the waiting order: its summary and current details
  4-waiting-order-search-attributes.png  its search attributes (deadline, reminder count)
  5-ops-attention.png                the list filtered by OpsAttention="NOTICE_UNDELIVERABLE"
  6-flagged-order.png                that order's current details: what needs a person

Each page is checked for what ops must read there, against the workflows' own state (the
deadline and reminders the status query reports). Exit 0 when all of it is there; 1 when
something is missing (the message says what; failure.png shows the page), 2 when Chromium
or Playwright is missing (--install-chromium installs Debian's Chromium when run as root), 130
on Ctrl-C.

    .venv/bin/python tools/ui_check.py [--running] [--out DIR] [--install-chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from csp_core.calendar import business_time  # noqa: E402
from csp_core.orders.models import order_workflow_id  # noqa: E402
from csp_core.orders.provisioning import OrderStatus  # noqa: E402
from csp_core.settings import get_settings  # noqa: E402
from csp_core.stages import OpsAttention, OrderStage  # noqa: E402
from csp_core.timezones import BUSINESS_TZ  # noqa: E402
from tools.ui_stack import (  # noqa: E402
    CHROMIUM_APT,
    StackFailed,
    Target,
    ensure_chromium,
    own_stack,
    running_stack,
)

BIN = Path(sys.executable).parent
EXAMPLES = sorted((ROOT / "examples").glob("order-*.json"))
WAITING_EXAMPLE = ROOT / "examples" / "order-link-invite.json"  # fabrikam: waits for the client
# On its own stack: an order for a reseller whose mail server refuses us, for good (550).
REFUSED_RECIPIENTS = "*@rechazado.mx"
REFUSED_ORDER_ID = "UI-CHECK-000001"
REFUSED_ORDER_CHANGES = {
    "order_id": REFUSED_ORDER_ID,
    "reseller": {
        "id": "RSL-099",
        "name": "Distribuidora del Rebote SA de CV",
        "email": "compras@rechazado.mx",
    },
    "tenant": {"mode": "create", "domain_prefix": "rebotemx"},
}
# The list columns ops add (Configure Columns): the order's search attributes.
ORDER_COLUMNS = [
    "OrderStage",
    "CustomerDomain",
    "ReminderCount",
    "AcceptanceDeadline",
    "OpsAttention",
]
AWAITING = OrderStage.AWAITING_PARTNER_ACCEPTANCE.value
UNDELIVERABLE = OpsAttention.NOTICE_UNDELIVERABLE.value


class CheckFailed(Exception):
    """What ops would not see, or what kept the check from getting there."""


# ---------------------------------------------------------------------------------------------
# The orders: submitted as a user would, until one waits and the others are done.


@dataclass
class Orders:
    waiting: OrderStatus  # the link-invite order, waiting for the client's acceptance
    deadline: datetime  # its acceptance deadline
    stages: dict[str, str]  # workflow id -> OrderStage, as the list (visibility) shows it
    flagged: str | None = None  # the workflow id of the order whose e-mail was refused
    attention: dict[str, list[str]] = field(default_factory=dict)  # workflow id -> OpsAttention


def order_files(target: Target) -> list[Path]:
    """The examples, and on our own stack the order whose reseller's e-mail is refused."""
    if not target.own:
        return EXAMPLES
    refused = json.loads((ROOT / "examples" / "order-create.json").read_text())
    refused |= REFUSED_ORDER_CHANGES
    path = target.cwd / "order-refused-mail.json"
    path.write_text(json.dumps(refused, ensure_ascii=False, indent=2))
    return [*EXAMPLES, path]


def submit(target: Target, files: list[Path]) -> None:
    result = subprocess.run(
        [str(BIN / "csp"), "order", "submit", *map(str, files)],
        cwd=target.cwd,
        env={**os.environ, **target.env},
        capture_output=True,
        text=True,
    )
    print(result.stdout.rstrip(), flush=True)
    if result.returncode != 0:
        raise CheckFailed(f"csp order submit exited {result.returncode}: {result.stderr.strip()}")


def order_id_of(path: Path) -> str:
    return json.loads(path.read_text())["order_id"]


async def settle(files: list[Path], patience: float) -> Orders:
    """Until the list shows the waiting order as AWAITING_PARTNER_ACCEPTANCE, every other order
    at a final stage, and the refused one flagged; then the waiting order's own status."""
    from api.orders import order_status
    from temporalutil import search_attributes as sa
    from temporalutil.client import connect

    client = await connect(get_settings())
    waiting_id = order_id_of(WAITING_EXAMPLE)
    waiting = order_workflow_id(waiting_id)
    ids = {order_workflow_id(order_id_of(path)) for path in files}
    refused = order_workflow_id(REFUSED_ORDER_ID)
    flagged = refused if refused in ids else None
    query = "WorkflowId IN ({})".format(", ".join(f'"{i}"' for i in sorted(ids)))
    give_up_at = time.monotonic() + patience
    while True:
        stages, attention = {}, {}
        async for execution in client.list_workflows(query):
            stages[execution.id] = execution.typed_search_attributes.get(sa.ORDER_STAGE) or "?"
            attention[execution.id] = execution.typed_search_attributes.get(sa.OPS_ATTENTION) or []
        final = {wid for wid, stage in stages.items() if _is_final(stage)}
        if waiting in final:
            raise CheckFailed(
                f"order {waiting_id} is {stages[waiting]}: it no longer waits for acceptance "
                "on this stack (run ui-check on a stack of its own, without --running)"
            )
        if (
            stages.get(waiting) == AWAITING
            and final == ids - {waiting}
            and (flagged is None or UNDELIVERABLE in attention.get(flagged, []))
        ):
            break
        if time.monotonic() > give_up_at:
            raise CheckFailed(
                f"the orders did not settle in {patience:.0f} s: {stages}, attention {attention}"
            )
        await asyncio.sleep(0.5)
    status = await order_status(client, waiting_id)
    if status.acceptance_deadline is None:
        raise CheckFailed(f"order {waiting_id} waits without a deadline: {status}")
    return Orders(status, status.acceptance_deadline, stages, flagged, attention)


def _is_final(stage: str) -> bool:
    return stage in OrderStage.__members__ and OrderStage(stage).is_final


# ---------------------------------------------------------------------------------------------
# The Web UI, as ops go through it.


class Pages:
    """One browser page through the Web UI: what ops open, what they must read, screenshots."""

    def __init__(self, page: Any, ui_url: str, namespace: str, out: Path) -> None:
        from playwright.sync_api import expect

        self.page, self.ui_url, self.namespace, self.out = page, ui_url, namespace, out
        self.expect = expect
        self.saved: list[Path] = []

    def open_list(self, query: str) -> None:
        query_string = urllib.parse.quote(query)
        self.page.goto(f"{self.ui_url}/namespaces/{self.namespace}/workflows?query={query_string}")

    def link(self, workflow_id: str) -> Any:
        return self.page.get_by_role("link", name=workflow_id, exact=True)

    def row(self, workflow_id: str) -> Any:
        return self.page.get_by_role("row").filter(has=self.link(workflow_id))

    def only_listed(self, shown: str, others: list[str]) -> None:
        self.expect(self.link(shown)).to_be_visible()
        for workflow_id in others:
            if workflow_id != shown:
                self.expect(self.link(workflow_id)).to_have_count(0)

    def add_order_columns(self) -> None:
        """Configure Columns, as ops would: the order's search attributes in, Run ID, Type
        and End out (room for them), kept by the UI for the next lists."""
        page = self.page
        page.get_by_role("button", name="Collapse Navigation").click()  # room for columns
        page.get_by_role("button", name="Configure Columns").click()
        for column in ORDER_COLUMNS:
            page.get_by_role("button", name=f"Add {column} column").click()
        for column in ("Run ID", "Type", "End"):
            page.get_by_role("button", name=f"Remove {column} column").click()
        page.get_by_role("button", name="Close Workflows Table configuration").click()
        self.expect(page.get_by_text("Configure Workflows Table")).to_be_hidden()
        for column in ORDER_COLUMNS:  # in the screenshot, not scrolled off to the right
            self.expect(page.get_by_role("columnheader", name=column)).to_be_in_viewport(ratio=1)

    def user_metadata(self, workflow_id: str) -> tuple[Any, Any]:
        """Open the workflow from the list, tab User Metadata: its summary and current details
        (each rendered in a frame of its own)."""
        self.link(workflow_id).click()
        self.page.get_by_role("tab", name="User Metadata").click()
        summary = self.page.frame_locator("#user-metadata-summary").locator("body")
        details = self.page.frame_locator("#user-metadata-current-details").locator("body")
        return summary, details

    def shot(self, name: str) -> None:
        path = self.out / name
        self.page.screenshot(path=path, full_page=True)
        self.saved.append(path)
        print(f"  saved {path}", flush=True)


def order_summary(order_file: Path) -> str:
    from api.orders import summary
    from csp_core.orders.models import parse_order

    return summary(parse_order(order_file.read_bytes(), ["MX"]))


def check_pages(ui: Pages, orders: Orders, files: list[Path]) -> None:
    expect, status = ui.expect, orders.waiting
    waiting = order_workflow_id(status.order_id)
    ids = list(orders.stages)

    # 1. Every order, with the order's search attributes added as columns.
    ui.open_list('WorkflowType="LicenseOrderWorkflow"')
    for workflow_id in ids:
        expect(ui.link(workflow_id)).to_be_visible()
    ui.add_order_columns()
    for workflow_id, stage in orders.stages.items():
        expect(ui.row(workflow_id)).to_contain_text(stage)
    deadline = orders.deadline.astimezone(BUSINESS_TZ)
    for text in (status.domain, f"{deadline:%b} {deadline.day}, {deadline.year}"):
        expect(ui.row(waiting)).to_contain_text(text)
    ui.shot("1-orders.png")

    # 2. The list filtered by stage: only the order that waits for its client.
    ui.open_list(f'OrderStage="{AWAITING}"')
    expect(ui.page.get_by_text(f'OrderStage = "{AWAITING}"')).to_be_visible()
    ui.only_listed(waiting, ids)
    ui.shot("2-awaiting-acceptance.png")

    # 3. The waiting order: its summary, and current details with the deadline and reminders.
    summary, details = ui.user_metadata(waiting)
    expect(summary).to_contain_text(order_summary(WAITING_EXAMPLE))
    for text in (
        AWAITING,
        f"order {status.order_id}",
        status.domain,
        f"Reminders sent: {status.reminders_sent}",
        f"Expires {business_time(orders.deadline)}",
    ):
        expect(details).to_contain_text(text)
    ui.shot("3-waiting-order.png")

    # 4. Its search attributes: what the list columns and queries read.
    ui.page.get_by_role("tab", name="Search Attributes").click()
    attributes = ui.page.get_by_role("textbox", name="Search Attributes")
    expect(attributes).to_contain_text(f'"OrderStage": "{AWAITING}"')
    expect(attributes).to_contain_text(f'"ReminderCount": {status.reminders_sent}')
    expect(attributes).to_contain_text('"AcceptanceDeadline"')
    ui.shot("4-waiting-order-search-attributes.png")

    if orders.flagged is None:
        print("  OpsAttention pages skipped: they need the check's own stack", flush=True)
        return
    # 5. What needs a person: the order whose e-mail the reseller's server refused.
    ui.open_list(f'OpsAttention="{UNDELIVERABLE}"')
    ui.only_listed(orders.flagged, ids)
    for text in (UNDELIVERABLE, orders.stages[orders.flagged]):
        expect(ui.row(orders.flagged)).to_contain_text(text)
    ui.shot("5-ops-attention.png")

    # 6. Its current details say what went wrong.
    summary, details = ui.user_metadata(orders.flagged)
    expect(summary).to_contain_text(order_summary(files[-1]))
    for text in (f"Needs ops: {UNDELIVERABLE}", "Undeliverable e-mails:"):
        expect(details).to_contain_text(text)
    ui.shot("6-flagged-order.png")


def browse(chromium: Path, target: Target, orders: Orders, files: list[Path], out: Path) -> int:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # the UI loads lazily; nothing here waits a fixed time
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium))
        context = browser.new_context(
            viewport={"width": 2000, "height": 900},
            locale="en-US",
            timezone_id=BUSINESS_TZ.key,  # the UI's "local" time is Mexico City, as for ops
        )
        ui = Pages(context.new_page(), target.ui_url, get_settings().temporal_namespace, out)
        try:
            check_pages(ui, orders, files)
        except (AssertionError, PlaywrightError) as err:
            ui.page.screenshot(path=out / "failure.png", full_page=True)
            raise CheckFailed(f"{err}\n(the page as it was: {out / 'failure.png'})") from err
        finally:
            browser.close()
    return len(ui.saved)


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
        help="seconds for the orders to settle",
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
    try:
        import playwright  # noqa: F401 - a dev dependency (pyproject), driving Debian's Chromium
    except ImportError:
        print(
            "ui-check: Playwright is missing: make install (pip install -e '.[dev]')",
            file=sys.stderr,
        )
        return 2
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*.png")]:  # no screenshot of an earlier run passes for this one's
        old.unlink()
    print(f"ui-check: Chromium {chromium}; screenshots into {out}", flush=True)
    with terminated_as_interrupt():
        try:
            stack = (
                nullcontext(running_stack())
                if args.running
                else own_stack(out / "stack", refuse=REFUSED_RECIPIENTS)
            )
            with stack as target:
                print(f"stack: Web UI {target.ui_url}", flush=True)
                os.environ.update(target.env)  # our own clients read the same settings
                get_settings.cache_clear()
                files = order_files(target)
                submit(target, files)
                orders = asyncio.run(settle(files, args.timeout))
                print(
                    f"{orders.waiting.order_id} waits for acceptance until "
                    f"{business_time(orders.deadline)}, "
                    f"reminders sent: {orders.waiting.reminders_sent}",
                    flush=True,
                )
                saved = browse(chromium, target, orders, files, out)
        except (CheckFailed, StackFailed) as err:
            print(f"ui-check FAILED: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("ui-check interrupted", file=sys.stderr)
            return 130
    print(f"ui-check passed: {saved} screenshots in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
