"""Drives an MCP server with the official Python SDK's client, step by step.

Usage: drive.py PLAN.json. The plan: {"transport": {"stdio": {"command", "args", "env"}} |
{"http": {"url", "token"}}, "api": AgentSigna base URL, "steps": [...]}. Steps:

- {"op": "list"}: tools/list, records the tool names.
- {"op": "call", "tool", "args", "progress": bool, "approve": approver token|null}:
  tools/call; with "approve", every pending review is approved through the HTTP API while
  the call is in flight.
- {"op": "approve", "token"}: approves every pending review now.
- {"op": "kill_upstream", "log"}: kills the upstream whose pid the toy ERP logged last.
- {"op": "concurrent", "calls": [call steps]}: runs calls side by side, records the order
  in which they finished.

Prints one JSON document: {"results": [one per step]}.
"""

import json
import os
import signal
import sys
import time
import urllib.request

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def api(base, token, method, path, body=None):
    req = urllib.request.Request(base + path, method=method, headers={"Authorization": f"Bearer {token}"})
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def approve_pending(base, token):
    done = []
    for review in api(base, token, "GET", "/v1/reviews?status=pending").get("reviews", []):
        rid = review.get("review_id") or review.get("id")
        api(base, token, "POST", f"/v1/reviews/{rid}/decisions", {"decision": "approve", "comment": "approved by the test"})
        done.append(rid)
    return done


def result_json(r):
    return {
        "isError": bool(r.is_error),
        "text": "\n".join(c.text for c in r.content if getattr(c, "type", "") == "text"),
        "structured": r.structured_content,
        "meta": r.meta,
    }


async def call(client, plan, step):
    progress = []

    async def on_progress(p, total, message):
        progress.append({"progress": p, "total": total, "message": message})

    started = time.monotonic()
    approved = []
    async with anyio.create_task_group() as tg:
        if step.get("approve"):

            async def approver():
                while not approved:
                    found = await anyio.to_thread.run_sync(approve_pending, plan["api"], step["approve"])
                    approved.extend(found)
                    await anyio.sleep(0.1)

            tg.start_soon(approver)
        try:
            r = await client.call_tool(
                step["tool"], step.get("args", {}), progress_callback=on_progress if step.get("progress") else None
            )
            out = result_json(r)
        except Exception as e:  # a protocol error: recorded, the test decides
            out = {"exception": repr(e)}
        tg.cancel_scope.cancel()
    out.update({"progress": progress, "approved": approved, "seconds": time.monotonic() - started, "tool": step["tool"]})
    return out


async def run_steps(client, plan):
    results = []
    for step in plan["steps"]:
        op = step["op"]
        if op == "list":
            tools = await client.list_tools()
            results.append({"tools": sorted(t.name for t in tools.tools)})
        elif op == "call":
            results.append(await call(client, plan, step))
        elif op == "approve":
            results.append({"approved": approve_pending(plan["api"], step["token"])})
        elif op == "kill_upstream":
            pids = [json.loads(l)["pid"] for l in open(step["log"]) if '"started"' in l]
            os.kill(pids[-1], signal.SIGKILL)
            await anyio.sleep(0.3)
            results.append({"killed": pids[-1]})
        elif op == "concurrent":
            finished = []
            outs = {}

            async def one(i, s):
                outs[i] = await call(client, plan, s)
                finished.append(i)

            async with anyio.create_task_group() as tg:
                for i, s in enumerate(step["calls"]):
                    tg.start_soon(one, i, s)
                    await anyio.sleep(0.2)
            results.append({"finished": finished, "results": [outs[i] for i in range(len(step["calls"]))]})
        else:
            raise ValueError(f"unknown op {op}")
    return results


async def main():
    plan = json.load(open(sys.argv[1]))
    t = plan["transport"]
    if "stdio" in t:
        s = t["stdio"]
        server = StdioServerParameters(command=s["command"], args=s["args"], env=s["env"])
        async with Client(server) as client:
            results = await run_steps(client, plan)
    else:
        h = t["http"]
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {h['token']}"}, timeout=60) as http:
            async with Client(streamable_http_client(h["url"], http_client=http)) as client:
                results = await run_steps(client, plan)
    print(json.dumps({"results": results}))


anyio.run(main)
