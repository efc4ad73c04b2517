"""`opencampaign js run` as a user runs it: an E4X script that queries and writes, and the limits."""

from __future__ import annotations

from pathlib import Path

from .test_cli import run

SCRIPT = """
xtk.session.Write(<recipient xtkschema="nms:recipient" _key="@email" email="cli@example.com" lastName="Cli"/>);
var res = xtk.queryDef.create(
  <queryDef schema="nms:recipient" operation="select">
    <select><node expr="@email"/><node expr="@lastName"/></select>
    <where><condition expr="@email = 'cli@example.com'"/></where>
  </queryDef>).ExecuteQuery();
for each (var r in res.recipient) logInfo(r.@email + " / " + r.@lastName);
"""


def test_js_run_queries_and_writes_then_limits_stop_bad_scripts(tmp_path: Path):
    data = tmp_path / "instance"
    run("init", "--data-dir", str(data), env={"OPENCAMPAIGN_ADMIN_PASSWORD": "x"})
    script = tmp_path / "script.js"
    script.write_text(SCRIPT)
    out = run("js", "run", str(script), "--data-dir", str(data))
    assert out.stdout.strip().splitlines() == ["cli@example.com / Cli"]
    loop = tmp_path / "loop.js"
    loop.write_text("while (true) {}")
    stopped = run("js", "run", str(loop), "--timeout", "1", "--data-dir", str(data), check=False)
    assert stopped.returncode == 1 and "CPU time limit exceeded" in stopped.stderr
    syntax = tmp_path / "bad.js"
    syntax.write_text("var a = 1;\nvar b = ;\n")
    failed = run("js", "run", str(syntax), "--data-dir", str(data), check=False)
    assert failed.returncode == 1 and "2" in failed.stderr  # the line of the original source
    unknown = run("js", "run", str(script), "--as", "nobody", "--data-dir", str(data), check=False)
    assert unknown.returncode != 0 and "nobody" in (unknown.stderr + unknown.stdout)
