"""A toy ERP as an MCP server (official Python SDK, `MCPServer`, formerly `FastMCP`).

Its tools stand for a business system's API: `create_purchase_order` and `send_payment`
act, `list_inventory` only reads, `delete_vendor` is one no agent should reach. Put
`agentsigna mcp-gate` in front of it with `tools.toml` beside this file:

    agentsigna mcp-gate --tools examples/mcp/tools.toml -- python examples/mcp/erp_server.py

The acting tools refuse a call without `_meta["agentsigna/passport"]`. With
`ERP_JWKS_URL` set (and PyJWT installed) they also verify it: signature, audience `erp`,
and that it authorizes this very action and amount. `ERP_LOG=FILE` appends one JSON line
per call (tool, arguments, passport), which the tests read.

    python erp_server.py                     # stdio
    python erp_server.py --http 8931         # streamable HTTP at http://127.0.0.1:8931/mcp
"""

import json
import os
import sys
import time
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

erp = MCPServer("toy-erp", instructions="A toy ERP: purchase orders, payments, inventory.")

INVENTORY = [
    {"sku": "LAP-14", "name": "14-inch laptop", "on_hand": 12},
    {"sku": "KBD-US", "name": "Keyboard (US layout)", "on_hand": 40},
    {"sku": "MON-27", "name": "27-inch monitor", "on_hand": 7},
]
_orders: list[dict[str, Any]] = []


def _log(event: dict[str, Any]) -> None:
    path = os.environ.get("ERP_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


def _passport(ctx: Context) -> str | None:
    meta = ctx.request_context.meta or {}
    value = meta.get("agentsigna/passport") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


def _require_passport(ctx: Context, tool: str, action: str, arguments: dict[str, Any], amount: str) -> str:
    """The passport of this call; raises (a tool error) when there is none or it does not fit."""
    token = _passport(ctx)
    _log({"event": "call", "tool": tool, "arguments": arguments, "passport": token})
    if token is None:
        raise ToolError("refused: this ERP accepts actions only with an AgentSigna passport")
    jwks_url = os.environ.get("ERP_JWKS_URL")
    if jwks_url:
        import jwt  # PyJWT, only needed when verifying

        client = jwt.PyJWKClient(jwks_url)
        key = client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key=key, algorithms=["EdDSA"], audience="erp", leeway=30)
        detail = claims["authorization_details"][0]
        if detail["action"] != action or (detail.get("amount") or {}).get("value") != amount:
            raise ToolError(f"refused: the passport authorizes {detail['action']} {detail.get('amount')}, not this call")
    return token


@erp.tool()
def create_purchase_order(vendor: str, total: str, currency: str, summary: str, ctx: Context) -> dict[str, Any]:
    """Create a purchase order for a vendor. `total` is a decimal string such as "4800.00"."""
    args = {"vendor": vendor, "total": total, "currency": currency, "summary": summary}
    _require_passport(ctx, "create_purchase_order", "purchase_order.create", args, total)
    order = {"po_number": f"PO-{1001 + len(_orders)}", **args}
    _orders.append(order)
    return order


@erp.tool()
def send_payment(payee: str, amount: str, currency: str, invoice: str, ctx: Context) -> dict[str, Any]:
    """Pay an invoice (ids start with "INV-") to a payee."""
    args = {"payee": payee, "amount": amount, "currency": currency, "invoice": invoice}
    _require_passport(ctx, "send_payment", "payment.send", args, amount)
    if not invoice.startswith("INV-"):
        raise ToolError(f"unknown invoice {invoice!r}: no payment was made")
    return {"payment": f"PAY-{invoice[4:]}", **args}


@erp.tool()
def list_inventory(sku_prefix: str = "", delay_seconds: int = 0) -> list[dict[str, Any]]:
    """List stock on hand (read-only). `delay_seconds` simulates a slow ERP."""
    _log({"event": "call", "tool": "list_inventory", "arguments": {"sku_prefix": sku_prefix}})
    if delay_seconds > 0:
        time.sleep(min(delay_seconds, 30))
    return [item for item in INVENTORY if item["sku"].startswith(sku_prefix)]


@erp.tool()
def delete_vendor(vendor: str) -> str:
    """Delete a vendor and its history (no agent should ever reach this)."""
    _log({"event": "call", "tool": "delete_vendor", "arguments": {"vendor": vendor}})
    return f"deleted {vendor}"


if __name__ == "__main__":
    _log({"event": "started", "pid": os.getpid()})
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        erp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        erp.run()
