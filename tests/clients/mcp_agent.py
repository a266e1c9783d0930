"""An agent on the official MCP Python SDK (PyPI `mcp`), as tests/clients.rs drives it.

    mcp_agent.py http  <mcp-url>  <agent-token> <api-base> <approver-token>
    mcp_agent.py stdio <airlock>  <agent-token> <api-base> <approver-token>

With MCP_AGENT_LIST_ONLY set it only lists its tools. Over streamable HTTP it sends the agent's token as a bearer; over stdio it starts `airlock mcp`
with the token in AIRLOCK_TOKEN (the data directory and master key come from the environment).
It lists its tools, calls a read, calls a tool whose call is refused, calls one that is not
its own, and calls a high-risk write that waits for approval while a person (the approver's
token) approves it over the HTTP API. It prints one JSON report of what it saw; the Rust test
judges it.
"""

import asyncio
import json
import os
import sys
import urllib.request

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def api(base, token, method, path, body=None):
    request = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def result_of(r):
    return {
        "is_error": bool(r.is_error),
        "structured": r.structured_content,
        "text": [c.text for c in r.content if getattr(c, "type", "") == "text"],
    }


async def approve_when_requested(base, approver):
    """A person: waits for the agent's request to appear, then approves it over the API."""
    for _ in range(200):
        pending = await asyncio.to_thread(api, base, approver, "GET", "/v1/approvals")
        if pending:
            request_id = pending[0]["id"]
            await asyncio.to_thread(
                api, base, approver, "POST", f"/v1/approvals/{request_id}/approve",
                {"reason": "checked the record"},
            )
            return request_id
        await asyncio.sleep(0.1)
    raise RuntimeError("the agent's approval request never appeared")


async def session(client, base, approver):
    report = {"protocol": str(client.protocol_version)}
    tools = (await client.list_tools()).tools
    if os.environ.get("MCP_AGENT_LIST_ONLY"):
        return {"tools": sorted(t.name for t in tools)}
    report["tools"] = {
        t.name: {
            "annotations": t.annotations.model_dump(exclude_none=True) if t.annotations else {},
            "input_schema": t.input_schema,
            "description": t.description,
        }
        for t in tools
    }
    report["read"] = result_of(await client.call_tool("crm__get", {"type": "items", "id": "c1"}))
    report["discover"] = result_of(await client.call_tool("airlock_discover", {"connection": "crm"}))
    report["refused"] = result_of(
        await client.call_tool("ledger__create", {"type": "items", "data": {"name": "x"}})
    )
    try:
        await client.call_tool("crm__update", {"type": "items", "id": "c1", "data": {}})
        report["not_granted"] = "answered"
    except Exception as e:  # the protocol's unknown-tool error
        report["not_granted"] = f"{type(e).__name__}: {e}"

    progress = []

    async def on_progress(done, total, message):
        progress.append(message)

    call = asyncio.create_task(
        client.call_tool(
            "crm__delete", {"type": "items", "id": "c1"}, progress_callback=on_progress
        )
    )
    request_id = await approve_when_requested(base, approver)
    report["approved"] = result_of(await asyncio.wait_for(call, 120))
    report["approved"]["request_id"] = request_id
    report["followed"] = result_of(
        await client.call_tool("airlock_await_approval", {"request_id": request_id})
    )
    report["after"] = result_of(await client.call_tool("crm__get", {"type": "items", "id": "c1"}))
    return report


async def main(transport, target, token, base, approver):
    if transport == "http":
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx2.Timeout(30.0, read=300.0),
        )
        async with http:
            async with Client(streamable_http_client(target, http_client=http)) as client:
                return await session(client, base, approver)
    env = {k: v for k, v in os.environ.items() if k.startswith("AIRLOCK_")}
    env["AIRLOCK_TOKEN"] = token
    params = StdioServerParameters(command=target, args=["mcp"], env=env)
    async with Client(params) as client:
        return await session(client, base, approver)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:]))))
