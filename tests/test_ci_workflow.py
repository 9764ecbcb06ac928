"""The example GitHub Actions workflow in docs/ci/, run step by step as written: the
gate step on a real run, the comment script under Node against a stand-in for GitHub's
REST API, and the install line against this repository's own metadata."""

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from recipes import digits_head

from benchmarks.ci_outputs import MARKER_PREFIX

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "docs" / "ci" / "compressor-gate.yml"
RECIPE = digits_head("ci-digits", outputs=False, calibration=64, evaluation=True) + """\
steps:
  - quantize: {variants: [{mode: static}]}
targets: [onnx]
benchmark: {runs: 40, warmup: 5, warmup_s: 0.05, memory: false}
"""
BUDGETS = """\
version: 1
limits:
  "*": {max_accuracy_drop: 0.5, max_size_regression: 1, max_latency_regression: 25}
"""


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict]:
    return workflow()["jobs"]["compress-and-gate"]["steps"]


def step(name: str) -> str:
    return next(s["run"] for s in steps() if s.get("name") == name)


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A model repository as the workflow sees it, after its 'Run the recipe' step."""
    d = tmp_path_factory.mktemp("model-repo")
    (d / "recipe.yaml").write_text(RECIPE)
    (d / "budgets.yaml").write_text(BUDGETS)
    proc = sh(step("Run the recipe"), d)
    assert proc.returncode == 0, proc.stderr
    (d / "baselines").mkdir()
    shutil.copy(d / "runs" / "ci" / "report.json", d / "baselines" / "report.json")
    return d


def test_gate_step_passes_against_a_baseline_of_the_same_run(repo):
    proc = sh(step("Gate"), repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (repo / "runs" / "ci" / "gate.xml").is_file() and (repo / "runs" / "ci" / "comment.md").is_file()
    assert (repo / "runs" / "ci" / "report.html").is_file()


def test_gate_step_fails_when_the_model_grew(repo):
    base = json.loads((repo / "baselines" / "report.json").read_text())
    for row in base["artifacts"]:
        row["metrics"]["size_bytes"] = int(row["metrics"]["size_bytes"] * 0.9)  # the baseline was smaller
    (repo / "baselines" / "report.json").write_text(json.dumps(base))
    try:
        proc = sh(step("Gate"), repo)
    finally:
        shutil.copy(repo / "runs" / "ci" / "report.json", repo / "baselines" / "report.json")
    assert proc.returncode == 1
    assert "FAIL onnx/fp32: max_size_regression 1%, measured 11.11%, over by 10.1 points" in proc.stdout
    assert proc.stderr.startswith("compressor: error: 2 budgets exceeded (of 6; each is shown above)")


# github-script runs `script` as the body of an async function of (require, github,
# context, core); this stands in for GitHub with an in-memory list of comments.
FAKE_GITHUB = r"""
const fs = require('fs');
const [scriptPath, statePath] = process.argv.slice(2);
const state = JSON.parse(fs.readFileSync(statePath, 'utf8'));
const issues = {
  listComments: async (p) => { state.calls.push(['list', p.issue_number, p.per_page]);
    return { data: state.comments.filter((c) => c.issue === p.issue_number) }; },
  updateComment: async (p) => { const c = state.comments.find((c) => c.id === p.comment_id);
    c.body = p.body; state.calls.push(['update', p.comment_id]); return { data: c }; },
  createComment: async (p) => { const c = { id: state.next++, issue: p.issue_number, body: p.body,
    html_url: 'https://github.example/c' }; state.comments.push(c); state.calls.push(['create', c.id]);
    return { data: c }; },
};
const github = { rest: { issues }, paginate: async (method, params) => (await method(params)).data };
const context = { repo: { owner: 'me', repo: 'model' }, issue: { number: 7 } };
const core = { info: (m) => state.log.push(m), setFailed: (m) => { state.failed = m; } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', 'core', fs.readFileSync(scriptPath, 'utf8'))(
  require, github, context, core)
  .then(() => fs.writeFileSync(statePath, JSON.stringify(state)))
  .catch((e) => { console.error(e); process.exit(1); });
"""


def comment_step() -> dict:
    return next(s for s in steps() if s.get("uses", "").startswith("actions/github-script@"))


def post_comment(repo: Path, state: dict) -> dict:
    (repo / "github.js").write_text(FAKE_GITHUB)
    (repo / "script.js").write_text(comment_step()["with"]["script"])
    (repo / "state.json").write_text(json.dumps(state))
    proc = subprocess.run(["node", "github.js", "script.js", "state.json"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads((repo / "state.json").read_text())


def test_the_comment_step_runs_after_a_failed_gate_on_pull_requests_only():
    s = comment_step()
    assert s["if"] == "always() && github.event_name == 'pull_request' && hashFiles('runs/ci/comment.md') != ''"
    assert "--markdown runs/ci/comment.md" in step("Gate")
    assert "readFileSync('runs/ci/comment.md'" in s["with"]["script"]
    assert workflow()["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert steps().index(s) > steps().index(next(x for x in steps() if x.get("name") == "Gate"))


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the github-script step")
def test_one_sticky_comment_is_posted_then_updated_in_place(repo):
    assert sh(step("Gate"), repo).returncode == 0
    body = (repo / "runs" / "ci" / "comment.md").read_text()
    marker = body.splitlines()[0]
    assert marker == "<!-- compressor-gate: ci-digits -->" and marker.startswith(MARKER_PREFIX)
    others = [{"id": 1, "issue": 7, "body": "LGTM"},
              {"id": 2, "issue": 7, "body": "<!-- compressor-gate: other-model -->\nanother report's"},
              {"id": 3, "issue": 7, "body": f"quoting the bot: {marker}"},
              {"id": 4, "issue": 8, "body": f"{marker}\non another pull request"}]
    state = post_comment(repo, {"comments": [dict(c) for c in others], "next": 10, "calls": [], "log": []})
    assert state["calls"] == [["list", 7, 100], ["create", 10]] and "failed" not in state
    assert state["comments"][:4] == others and state["comments"][4]["body"] == body

    base = json.loads((repo / "baselines" / "report.json").read_text())
    for row in base["artifacts"]:
        row["metrics"]["size_bytes"] = int(row["metrics"]["size_bytes"] * 0.9)
    (repo / "baselines" / "report.json").write_text(json.dumps(base))
    try:
        assert sh(step("Gate"), repo).returncode == 1  # the next push: over budget
    finally:
        shutil.copy(repo / "runs" / "ci" / "report.json", repo / "baselines" / "report.json")
    failed = (repo / "runs" / "ci" / "comment.md").read_text()
    assert failed != body and failed.splitlines()[0] == marker and "gate FAILED" in failed.splitlines()[1]
    state = post_comment(repo, state | {"calls": []})
    assert state["calls"] == [["list", 7, 100], ["update", 10]]
    assert state["comments"][:4] == others and [c["body"] for c in state["comments"][4:]] == [failed]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the github-script step")
def test_a_comment_file_without_the_marker_fails_the_step(tmp_path):
    (tmp_path / "runs" / "ci").mkdir(parents=True)
    (tmp_path / "runs" / "ci" / "comment.md").write_text("### something else\n")
    state = post_comment(tmp_path, {"comments": [], "next": 1, "calls": [], "log": []})
    assert state["calls"] == [] and "does not start with the gate's marker" in state["failed"]


def test_the_install_line_names_this_project_from_its_git_repository():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert step("Install") == 'pip install "$COMPRESSOR"'
    req = Requirement(workflow()["env"]["COMPRESSOR"])
    assert req.name == project and req.url.startswith("git+https://github.com/") and "@" in req.url[len("git+"):]


def test_the_install_requirement_resolves_to_this_repositorys_metadata(tmp_path):
    """pip builds the project's metadata and refuses a requirement whose name is not the
    project's: the workflow's name, pointed at this checkout instead of the git URL."""
    name = Requirement(workflow()["env"]["COMPRESSOR"]).name
    out = tmp_path / "pip.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                           "--no-build-isolation", "--quiet", "--report", str(out), f"{name} @ {ROOT.as_uri()}"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    installed = json.loads(out.read_text())["install"]
    assert [(i["metadata"]["name"], i["metadata"]["version"]) for i in installed] == [
        (name, tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the github-script step")
def test_a_comment_over_githubs_limit_is_cut_with_a_note_and_keeps_its_marker(tmp_path):
    (tmp_path / "runs" / "ci").mkdir(parents=True)
    marker = "<!-- compressor-gate: big -->"
    (tmp_path / "runs" / "ci" / "comment.md").write_text(marker + "\n" + "| row |\n" * 20_000)
    state = post_comment(tmp_path, {"comments": [], "next": 1, "calls": [], "log": []})
    body = state["comments"][0]["body"]
    assert len(body) <= 65536 and body.startswith(marker + "\n") and body.rstrip().endswith("in the job summary._")
