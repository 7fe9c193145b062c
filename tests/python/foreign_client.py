"""A client that knows no MessagePack and no Rust: nats-py and JSON only.

It publishes a manifest to the manifests subject, reads the per-object
result, receives the change event from the obj subject, and reads the object
back through the API subject. Usage: foreign_client.py NATS_URL CLUSTER
[USER PASSWORD] (the bus credentials kubus up made for an identity).
"""

import asyncio
import json
import sys

import nats

JSON = {"Kubus-Codec": "json"}

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: from-python
data:
  greeting: hello
"""


async def main(url: str, cluster: str, user=None, password=None) -> None:
    nc = await nats.connect(url, connect_timeout=5, user=user, password=password)
    try:
        changes = await nc.subscribe(f"kubus.{cluster}.obj.configmaps.default.>")

        reply = await nc.request(
            f"kubus.{cluster}.manifests", MANIFEST.encode(), timeout=10, headers=JSON
        )
        result = json.loads(reply.data)
        assert result["applied"] is True, result
        doc = result["documents"][0]
        assert doc["result"] == {"Ok": "created"}, doc
        assert doc["object"]["name"] == "from-python", doc

        # the change event, in JSON, on the object's subject
        while True:
            msg = await changes.next_msg(timeout=10)
            if msg.subject.endswith("._bookmark"):
                continue
            event = json.loads(msg.data)
            break
        assert msg.headers.get("Kubus-Codec") == "json", msg.headers
        assert event["type"] == "ADDED", event
        assert event["object"]["metadata"]["name"] == "from-python", event
        assert event["object"]["data"] == {"greeting": "hello"}, event
        assert event["revision"] > 0 and event["prev"] < event["revision"], event

        # the API, in JSON
        body = json.dumps({"get": {"name": "from-python"}}).encode()
        reply = await nc.request(
            f"kubus.{cluster}.api.get.configmaps.default", body, timeout=10, headers=JSON
        )
        got = json.loads(reply.data)["Ok"]["object"]
        assert got["metadata"]["resourceVersion"] == str(event["revision"]), got

        # a typed error a client can act on
        body = json.dumps({"get": {"name": "nope"}}).encode()
        reply = await nc.request(
            f"kubus.{cluster}.api.get.configmaps.default", body, timeout=10, headers=JSON
        )
        err = json.loads(reply.data)["Err"]
        assert err["reason"] == "NotFound", err
        print("foreign client: ok", event["revision"])
    finally:
        await nc.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
