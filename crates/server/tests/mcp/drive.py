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
- {"op": "cancel", "tool", "args"}: tools/call with a progress token, abandoned (the SDK
  sends `notifications/cancelled`) as soon as the first progress notification arrives.
- {"op": "wait_slot_free", "token"}: while the session stays open, long-polls the agent's
  newest pending case for a second at a time until three answers in a row got the wait
  (no `AgentSigna-Wait: unavailable`), i.e. nobody else holds the server's wait slots.

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


async def cancel_after_progress(client, step):
    progress = []
    first = anyio.Event()

    async def on_progress(p, total, message):
        progress.append({"progress": p, "total": total, "message": message})
        first.set()

    started = time.monotonic()
    outcome = "cancelled"
    async with anyio.create_task_group() as tg:

        async def the_call():
            nonlocal outcome
            try:
                await client.call_tool(step["tool"], step.get("args", {}), progress_callback=on_progress)
                outcome = "answered"  # the call finished before it could be cancelled
            except Exception as e:
                outcome = f"exception: {e!r}"

        tg.start_soon(the_call)
        with anyio.fail_after(60):
            await first.wait()
        tg.cancel_scope.cancel()
    return {"outcome": outcome, "progress": progress, "seconds": time.monotonic() - started}


def wait_slot_free(base, token):
    cases = api(base, token, "GET", "/v1/cases")["cases"]
    case = next(c for c in cases if c["status"] == "pending_review")
    cid = case.get("case_id") or case.get("id")
    busy, free, deadline = 0, 0, time.monotonic() + 30
    while free < 3 and time.monotonic() < deadline:
        req = urllib.request.Request(f"{base}/v1/cases/{cid}?wait=1", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            if r.headers.get("AgentSigna-Wait") == "unavailable":
                busy, free = busy + 1, 0
                time.sleep(0.2)
            else:
                free += 1
    return {"case": cid, "free": free, "busy": busy}


async def run_steps(client, plan):
    results = []
    for step in plan["steps"]:
        op = step["op"]
        if op == "list":
            tools = await client.list_tools()
            results.append({"tools": sorted(t.name for t in tools.tools)})
        elif op == "call":
            results.append(await call(client, plan, step))
        elif op == "cancel":
            results.append(await cancel_after_progress(client, step))
        elif op == "wait_slot_free":
            results.append(await anyio.to_thread.run_sync(wait_slot_free, plan["api"], step["token"]))
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
