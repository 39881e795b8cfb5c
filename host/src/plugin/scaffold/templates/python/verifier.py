"""A gaffer verifier: reject an attempt whose tests failed (with a finding), hand a change to
sensitive paths to a person, approve the rest.

Config (the `config` table of `[plugins.verifier]` in gaffer.toml):

| field | default | meaning |
|---|---|---|
| `needs_human_paths` | `["db/migrations/", ".github/workflows/"]` | a change to a path starting with one of these goes to a person |
"""

import json

import wit_world
from wit_world.imports import host, types
from componentize_py_types import Err

# Path prefixes that need a person when the config gives none.
DEFAULT_NEEDS_HUMAN_PATHS = ["db/migrations/", ".github/workflows/"]


class WitWorld(wit_world.WitWorld):
    def verify(self, request: types.VerifyRequest) -> types.Verdict:
        needs_human_paths = needs_human_paths_from_config(host.config())
        verdict = judge(needs_human_paths, request)
        name = {
            types.Verdict_Approve: "approve",
            types.Verdict_Reject: "reject",
            types.Verdict_NeedsHuman: "needs-human",
        }[type(verdict)]
        host.log(host.LogLevel.INFO, "verified", [("verdict", name)])
        return verdict


def judge(needs_human_paths: list[str], request: types.VerifyRequest) -> types.Verdict:
    tests = request.tests
    if not tests.ran:
        return types.Verdict_NeedsHuman(
            f"the test command `{tests.command}` did not run, so nothing checked the change"
        )
    if not tests.passed:
        status = ""
        if tests.exit_code is not None and tests.exit_code != 0:
            status = f" (exit code {tests.exit_code})"
        return types.Verdict_Reject(
            [
                types.Finding(
                    message=f"the tests failed: `{tests.command}`{status}; make them pass",
                    path=None,
                    line=None,
                )
            ]
        )
    if not request.diff.files:
        return types.Verdict_Reject(
            [types.Finding(message="the attempt changed nothing", path=None, line=None)]
        )
    for file in request.diff.files:
        for prefix in needs_human_paths:
            if file.path.startswith(prefix):
                return types.Verdict_NeedsHuman(
                    f"`{file.path}` is under `{prefix}`: a person reviews changes there"
                )
    return types.Verdict_Approve()


def needs_human_paths_from_config(text: str) -> list[str]:
    """`needs_human_paths` from the config JSON (an object, `{}` when gaffer.toml gives none)."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise Err(f"invalid config: {e}")
    if not isinstance(config, dict):
        raise Err("invalid config: not a JSON object")
    value = config.get("needs_human_paths", DEFAULT_NEEDS_HUMAN_PATHS)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Err(
            f"invalid config: `needs_human_paths` must be a list of strings, not {value!r}"
        )
    return value
