"""What the Xvantage face shows of our orders: the order search and an order's details, with
each line's subscription (serviceContractInfo) as it stands in the shared world now."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from xi.sdk.resellers.models import OrderDetailB2B, OrderSearchResponse

from sandbox.state import SandboxError
from sandbox.xvantage.shapes import answer

if TYPE_CHECKING:
    from sandbox.xvantage.face import XvantageFace

_SEARCH_STATUS = {"Canceled": "CANCELLED", "Delivered": "CLOSED"}
_LINE_STATUS = {"active": "Active", "pending": "Pending", "suspended": "Suspended",
                "deleted": "Canceled", "expired": "Expired", "disabled": "Disabled"}  # fmt: skip


def search(face: XvantageFace, params: dict[str, str]) -> dict[str, Any]:
    face.process_due()
    with face.state.lock:
        found = [
            _summary(face, order)
            for order in face.world["orders"].values()
            if all(order.get(key) == value for key, value in params.items() if value)
        ]
    body = {
        "recordsFound": len(found),
        "pageSize": 100,
        "pageNumber": 1,
        "orders": found,
    }
    return answer(OrderSearchResponse, body)


def _summary(face: XvantageFace, order: dict[str, Any]) -> dict[str, Any]:
    status = _status(face, order)
    return {
        "ingramOrderNumber": order["ingramOrderNumber"],
        "ingramOrderDate": order["ingramOrderDate"],
        "customerOrderNumber": order["customerOrderNumber"],
        "vendorName": "Microsoft",
        "endUserCompanyName": order["end_user"].get("companyName"),
        "orderStatus": _SEARCH_STATUS.get(status, "OPEN"),
    }


def _status(face: XvantageFace, order: dict[str, Any]) -> str:
    if order["rejected"]:
        return "Canceled"
    pc = _pc_order(face, order)
    return "Delivered" if pc and pc["status"] == "completed" else "Processing"


def _pc_order(face: XvantageFace, order: dict[str, Any]) -> dict[str, Any] | None:
    if order["tenant_id"] is None:
        return None
    return face.state.get_order(order["tenant_id"], order["pc_order_id"])


def details(face: XvantageFace, number: str) -> dict[str, Any]:
    face.process_due()
    with face.state.lock:
        order = face.world["orders"].get(number)
        if order is None:
            raise SandboxError(404, "/errors/not-found", f"Order {number} was not found.")
        pc = _pc_order(face, order)
        subs = {}
        if pc is not None:
            for sub in face.state.list_subscriptions(order["tenant_id"], pc["id"]):
                subs[sub["id"]] = sub
        lines = [_line(order, item, subs) for item in (pc["lineItems"] if pc else order["lines"])]
        body = {
            "ingramOrderNumber": number,
            "ingramOrderDate": order["ingramOrderDate"],
            "orderType": "S",
            "customerOrderNumber": order["customerOrderNumber"],
            "endCustomerOrderNumber": order["endCustomerOrderNumber"],
            "orderStatus": _status(face, order),
            "notes": order["rejected"] or f"Microsoft tenant {order['domain']}",
            "endUserInfo": copy.deepcopy(order["end_user"]),
            "lines": lines,
            "additionalAttributes": [
                {"attributeName": "microsoft_domain", "attributeValue": order["domain"]}
            ],
        }
    return answer(OrderDetailB2B, body)


def _line(order: dict[str, Any], item: dict[str, Any], subs: dict[str, Any]) -> dict[str, Any]:
    number = item.get("lineItemNumber", 0) + 1
    line: dict[str, Any] = {
        "subOrderNumber": f"{order['ingramOrderNumber']}-11",
        "ingramOrderLineNumber": f"{number:03d}",
        "customerLineNumber": item.get("customerLineNumber") or str(number),
        "vendorPartNumber": item["offerId"],
        "vendorName": "Microsoft",
        "partDescription": item.get("friendlyName"),
        "quantityOrdered": item["quantity"],
        "lineStatus": "Canceled" if order["rejected"] else "In Progress",
    }
    sub = subs.get(item.get("subscriptionId", ""))
    if sub is None:
        return line
    line["lineStatus"] = "Delivered" if sub["status"] != "pending" else "In Progress"
    line["quantityConfirmed"] = sub["quantity"]
    line["serviceContractInfo"] = {
        "contractInfo": {
            "contractNumber": sub["id"],
            "contractStatus": _LINE_STATUS.get(sub["status"], sub["status"]),
            "contractStartDate": sub["effectiveStartDate"],
            "contractEndDate": sub["commitmentEndDate"],
            "contractDuration": sub["termDuration"],
        },
        "subscriptions": {
            "subscriptionId": sub["id"],
            "subscriptionTerm": sub["termDuration"],
            "renewalTerm": sub["termDuration"],
            "billingModel": sub["billingCycle"],
            "subcriptionStartDate": sub["effectiveStartDate"],
            "subcriptionEndDate": sub["commitmentEndDate"],
        },
        "licenseInfo": {"quantity": str(sub["quantity"])},
    }
    line["additionalAttributes"] = [
        {"attributeName": "auto_renew", "attributeValue": str(sub["autoRenewEnabled"]).lower()}
    ]
    return line
