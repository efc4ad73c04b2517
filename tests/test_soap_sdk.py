"""The official client, unchanged: @adobe/acc-js-sdk 1.2.0 (npm) against a real server.

- `tests/node/conformance.js`: the 29 steps of soap-protocol.md §11 (all must pass);
- `tests/node/deep.test.js` (node --test): data written through the SDK read back through it.
The SDK is installed into tests/node/node_modules with npm when missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .live_server import LiveServer
from .test_soap import ADMIN_PASSWORD, SoapClient

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are required in CI")
        pytest.skip("node/npm not installed")
    sdk = NODE_DIR / "node_modules" / "@adobe" / "acc-js-sdk"
    if not sdk.exists():
        result = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, f"npm install failed:\n{result.stdout}\n{result.stderr}"
    return sdk


@pytest.fixture(scope="module")
def sdk_server(tmp_path_factory: pytest.TempPathFactory, node_modules: Path) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("sdk") / "instance"
    with LiveServer(data, env={"OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD}) as live:
        seed = SoapClient(live.url)
        seed.logon()
        # Rows for the script's get / getIfExists / select on @name='a' (it reads before it writes).
        reply = seed.call("xtk:persist|xtk:session#WriteCollection", (
            '<doc xsi:type="" SOAP-ENV:encodingStyle="http://xml.apache.org/xml-soap/literalxml">'
            '<recipient xtkschema="nms:recipient"><recipient _operation="insert" email="a1@example.com" name="a"/>'
            '<recipient _operation="insert" email="a2@example.com" name="a"/>'
            '<recipient _operation="insert" email="z@example.com" name="z"/></recipient></doc>'))
        assert reply.fault is None, reply.text
        seed.close()
        yield live


def _node(args: list[str], server: LiveServer, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACC_URL": server.url, "ACC_USER": "admin", "ACC_PASSWORD": ADMIN_PASSWORD, **(extra or {})}
    return subprocess.run(["node", *args], cwd=NODE_DIR, capture_output=True, text=True, env=env, timeout=300)


def test_conformance_script_passes_all_29_steps(sdk_server: LiveServer):
    # Step 28 (IMS bearer + sessionInfo) sends `Authorization: Bearer` with an access token of a technical
    # account, obtained as a user would: CLI account, then POST /ims/token/v3.
    from .test_auth_e2e import token_for

    token = token_for(sdk_server, "conformance", "campaign - prod - admin")
    result = _node(["conformance.js"], sdk_server, {"ACC_IMS_TOKEN": token})
    output = result.stdout + result.stderr
    assert "29/29 OK" in output, output
    assert result.returncode == 0, output
    steps = [line for line in result.stdout.splitlines() if line.startswith(("OK", "FAIL"))]
    assert len(steps) == 29 and all(line.startswith("OK") for line in steps), output
    # the SoapActions the server should see (soap-protocol.md §11)
    for action in ("xtk:persist|xtk:session#Write", "xtk:persist|nms:delivery#NewInstance",
                   "xtk:persist|xtk:session#WriteCollection", "xtk:session#Logoff"):
        assert f"-> {action}" in result.stdout


def test_deeper_checks_with_the_sdk(sdk_server: LiveServer):
    result = _node(["--test", "deep.test.js"], sdk_server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout


def test_javascript_schema_methods_through_the_sdk(tmp_path: Path, node_modules: Path):
    """A custom schema whose methods live in an xtk:javascript library, called by the unchanged SDK."""
    schemas = Path(__file__).parent / "js_corpus" / "schemas"
    with LiveServer(tmp_path / "instance", "--schemas", str(schemas),
                    env={"OPENCAMPAIGN_ADMIN_PASSWORD": ADMIN_PASSWORD}) as live:
        result = _node(["jsmethod.js"], live)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["hello"] == "Hello Ann"
    assert out["previous"] == "old" and out["thisLabel"] == "new"  # the updated `this` came back
    # Campaign wraps a method failure in SOP-330011; the script's own code and text are in the detail.
    assert out["fault"] == "SOP-330011" and "CUS-000001 It failed" in out["faultMessage"]
